"""Label Studio's REST API: projects, tasks (paginated), task images, predictions and annotations.

Authentication is label-studio-sdk's own: a legacy key is sent as ``Token <key>``; a personal access token (a
JWT refresh token) is exchanged at ``/api/token/refresh/`` and sent as ``Bearer <access>``, refreshed when it
expires. The header goes to the Label Studio host only, never to an image host a task points at.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.core.client_wrapper import SyncClientWrapper

from .addresses import AddressPolicy
from .config import ProjectConfig
from .errors import AuthError, DownloadError, LabelStudioError, UnreachableError
from .settings import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_TIMEOUT, BackendSettings

# URI schemes of Label Studio's cloud storages: only Label Studio can presign them.
CLOUD_SCHEMES = ("s3", "gs", "azure-blob", "azure-spi")
_MAX_REDIRECTS = 5
# Data Manager filter: tasks without any annotation.
# Only the fields Task needs; "fields=all" makes Label Studio compute predictions_model_versions.
_TASK_FIELDS = "id,data,project,total_annotations,total_predictions,predictions_model_versions"
_UNLABELED = {
    "conjunction": "and",
    "items": [{"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0}],
}
# The Data Manager's "Prediction score" column, ascending: our score puts the tasks most likely to need a fix first.
_BY_SCORE = ["tasks:predictions_score"]


@dataclass(frozen=True)
class Project:
    id: int
    title: str
    label_config: str = field(repr=False)
    task_count: int = 0
    labeled_count: int = 0

    def config(self) -> ProjectConfig:
        """The parsed labeling config; raises ``ConfigError`` naming what groundlabel misses in it."""
        return ProjectConfig.parse(self.label_config)


@dataclass(frozen=True)
class Task:
    id: int
    data: dict
    project: int | None = None
    annotation_count: int = 0
    prediction_count: int = 0
    model_versions: tuple[str, ...] = ()  # of the task's predictions: lets a re-run skip what it predicted

    @property
    def is_labeled(self) -> bool:
        return self.annotation_count > 0


@dataclass(frozen=True)
class TaskPage:
    """One page of a project's tasks, and how many tasks match in all."""

    tasks: list[Task]
    page: int
    page_size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


class LabelStudioClient:
    """A connection to one Label Studio server with one token.

    ``timeout`` bounds every request (connect and each read); ``max_image_bytes`` bounds image downloads;
    ``addresses`` says which hosts images may come from (``sync.addresses``: never link-local or metadata
    addresses, private ones only for this Label Studio's host and the allowed hosts). Errors are ``AuthError`` (401/403), ``UnreachableError`` (no answer) or ``LabelStudioError`` (other status).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        addresses: AddressPolicy = AddressPolicy(),
    ):
        url = (url or "").strip().rstrip("/")
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise LabelStudioError(
                f"The Label Studio URL must start with http:// or https://, got {url!r}.", retryable=False
            )
        if not (token or "").strip():
            raise AuthError("No Label Studio token given: copy it from Label Studio's Account & Settings page.")
        if (reason := addresses.refusal(url, trusted_host=urlsplit(url).hostname)) is not None:
            raise LabelStudioError(
                f"The Label Studio URL {url!r} is refused: {reason}. groundlabel does not connect there.",
                retryable=False,
            )
        self.url = url
        self.addresses = addresses
        self.timeout = timeout
        self.max_image_bytes = max_image_bytes
        # No cookie jar: Label Studio's session cookie would go to every port of its host; the token is enough.
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
        )
        try:
            self._auth = SyncClientWrapper(
                api_key=token.strip(), base_url=url + "/", httpx_client=self._http, timeout=timeout
            )
        except ApiError as error:
            self._http.close()
            raise AuthError(f"The Label Studio token is not usable: {_detail(error.body)}", error.status_code) from None

    @classmethod
    def for_public_images(
        cls,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        addresses: AddressPolicy = AddressPolicy(),
    ) -> LabelStudioClient:
        """A client for images at absolute http(s) URLs when no Label Studio is known: it sends no credentials
        anywhere (no URL is Label Studio's), with the same limits, redirect and address rules."""
        client = cls.__new__(cls)
        client.url, client.timeout, client.max_image_bytes, client._auth = "", timeout, max_image_bytes, None
        client.addresses = addresses
        client._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
        )
        return client

    @classmethod
    def from_settings(cls, settings: BackendSettings, url: str | None = None) -> LabelStudioClient:
        """The settings' Label Studio (LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY), or ``url`` with their token."""
        url = url or settings.label_studio_url
        if not url or not settings.label_studio_token:
            raise LabelStudioError(
                "Set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (or LABEL_STUDIO_HOST and LABEL_STUDIO_ACCESS_TOKEN)."
            )
        return cls(
            url,
            settings.label_studio_token,
            timeout=settings.timeout,
            max_image_bytes=settings.max_image_bytes,
            addresses=settings.addresses,
        )

    def __enter__(self) -> LabelStudioClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:  # never the token
        return f"LabelStudioClient({self.url!r})"

    # --- JSON API -------------------------------------------------------------------------------------------

    def api(
        self, method: str, path: str, *, params: dict | None = None, json: Any = None, timeout: float | None = None
    ) -> Any:
        """One authenticated call to ``/api/...``; the decoded JSON reply (None for an empty one)."""
        response = self._send(
            method, urljoin(self.url + "/", path.lstrip("/")), params=params, json=json, timeout=timeout
        )
        if response.status_code >= 400:
            raise _status_error(response, f"{method} {path}")
        return response.json() if response.content else None

    def whoami(self) -> dict:
        """The token's user: the cheapest call that proves URL and token work."""
        return self.api("GET", "/api/current-user/whoami")

    def projects(self) -> list[Project]:
        """Every project the token's user can see (all pages)."""
        projects, page = [], 1
        while True:
            reply = self.api("GET", "/api/projects", params={"page": page, "page_size": 100})
            projects += [_project(item) for item in reply["results"]]
            if not reply.get("next"):
                return projects
            page += 1

    def project(self, project_id: int) -> Project:
        return _project(self.api("GET", f"/api/projects/{int(project_id)}"))

    def set_label_config(self, project_id: int, xml: str) -> None:
        """Replace the project's labeling config (Label Studio checks it against the annotations it holds)."""
        self.api("PATCH", f"/api/projects/{int(project_id)}", json={"label_config": xml})

    def tasks(
        self,
        project_id: int,
        *,
        page: int = 1,
        page_size: int = 50,
        unlabeled_only: bool = False,
        by_score: bool = False,
    ) -> TaskPage:
        """One page of a project's tasks (``page`` counts from 1); ``unlabeled_only`` keeps tasks without annotations;
        ``by_score`` sorts by prediction score, lowest first. A page past the end is empty, not an error."""
        params = {
            "project": int(project_id),
            "page": page,
            "page_size": page_size,
            "resolve_uri": "true",
            "fields": "all",
            "include": _TASK_FIELDS,
        }
        query = {"filters": _UNLABELED} if unlabeled_only else {}
        if by_score:
            query["ordering"] = _BY_SCORE
        if query:
            params["query"] = json.dumps(query)
        try:
            reply = self.api("GET", "/api/tasks", params=params)
        except LabelStudioError as error:
            if error.status == 404 and page > 1:
                total = self.tasks(project_id, page_size=1, unlabeled_only=unlabeled_only).total
                return TaskPage([], page, page_size, total)
            raise
        return TaskPage([_task(item) for item in reply["tasks"]], page, page_size, int(reply["total"]))

    def iter_tasks(self, project_id: int, *, unlabeled_only: bool = False, page_size: int = 100) -> Iterator[Task]:
        """Every matching task, fetched page by page."""
        for batch in self.iter_pages(project_id, unlabeled_only=unlabeled_only, page_size=page_size):
            yield from batch.tasks

    def iter_pages(
        self,
        project_id: int,
        *,
        unlabeled_only: bool = False,
        page_size: int = 100,
        retry: Callable[[Callable[[], TaskPage]], TaskPage] = lambda call: call(),
    ) -> Iterator[TaskPage]:
        """The matching tasks' pages in order (each with the total count), each fetched through ``retry``."""
        page = 1
        while True:
            batch = retry(
                functools.partial(self.tasks, project_id, page=page, page_size=page_size, unlabeled_only=unlabeled_only)
            )
            yield batch
            if not batch.has_next or not batch.tasks:
                return
            page += 1

    def task(self, task_id: int) -> Task:
        return _task(self.api("GET", f"/api/tasks/{int(task_id)}", params={"resolve_uri": "true"}))

    def predictions(self, task_id: int) -> list[dict]:
        return self.api("GET", "/api/predictions", params={"task": int(task_id)})

    def annotations(self, task_id: int) -> list[dict]:
        return self.api("GET", f"/api/tasks/{int(task_id)}/annotations/")

    def create_prediction(
        self, task_id: int, result: list[dict], *, score: float | None = None, model_version: str | None = None
    ) -> dict:
        body = {"task": int(task_id), "result": result, "score": score, "model_version": model_version}
        return self.api("POST", "/api/predictions", json={k: v for k, v in body.items() if v is not None})

    def delete_prediction(self, prediction_id: int) -> None:
        self.api("DELETE", f"/api/predictions/{int(prediction_id)}")

    def create_annotation(self, task_id: int, result: list[dict]) -> dict:
        return self.api("POST", f"/api/tasks/{int(task_id)}/annotations/", json={"result": result})

    def import_predictions(self, project_id: int, predictions: list[dict]) -> dict:
        """Many predictions in one request (``[{"task", "result", "score", "model_version"}, ...]``); Label Studio
        answers ``{"created": n}``. Not idempotent: check existing predictions first where that matters."""
        return self.api(
            "POST",
            f"/api/projects/{int(project_id)}/import/predictions",
            json=predictions,
            timeout=max(self.timeout, 60.0),
        )

    # --- images ---------------------------------------------------------------------------------------------

    def task_image(self, task: Task, config: ProjectConfig) -> bytes:
        """The bytes of the image a task shows in ``config``'s Image tag."""
        return self.download(config.image_url(task.data), task_id=task.id)

    def resolve_url(self, url: str, task_id: int | None = None) -> str:
        """Where to fetch an image reference: upload and local-files paths are joined with the Label Studio host,
        cloud URIs (s3://, gs://, azure-blob://) go through Label Studio's presign endpoint for ``task_id``."""
        scheme = urlsplit(url).scheme.lower()
        if scheme in ("http", "https"):
            return url
        if scheme in CLOUD_SCHEMES:
            if task_id is None:
                raise DownloadError(f"{url!r} is in cloud storage: Label Studio can presign it only for a task id.")
            encoded = base64.urlsafe_b64encode(url.encode()).decode()
            return f"{self.url}/tasks/{int(task_id)}/presign/?fileuri={encoded}"
        if url.startswith("/"):
            return urljoin(self.url + "/", url)
        raise DownloadError(f"Cannot fetch image {url!r}: expected http(s), a Label Studio path or a cloud URI.")

    def download(self, url: str, task_id: int | None = None) -> bytes:
        """Fetch an image, following redirects; the token goes only to the Label Studio host.

        Raises ``DownloadError`` on a refused status, a timeout, or more than ``max_image_bytes``.
        """
        target = self.resolve_url(url, task_id)
        deadline = time.monotonic() + 3 * self.timeout
        for _ in range(_MAX_REDIRECTS + 1):
            trusted = urlsplit(self.url).hostname if self.url else None
            if not self.is_label_studio(target) and (reason := self.addresses.refusal(target, trusted)) is not None:
                raise DownloadError(f"Image {_safe(target)}: refused, {reason}.")
            try:
                with self._stream(target) as response:
                    if response.is_redirect:
                        target = urljoin(target, response.headers["location"])
                        if urlsplit(target).scheme.lower() not in ("http", "https"):
                            raise DownloadError(
                                f"Image {_safe(url)}: redirected to a {urlsplit(target).scheme}:// "
                                "URL; groundlabel follows redirects to http(s) only."
                            )
                        continue
                    if response.status_code >= 400:
                        response.read()
                        reason = (
                            _status_error(response, "download")
                            if self.is_label_studio(target)
                            else f"the image host answered {response.status_code}"
                        )
                        raise DownloadError(
                            f"Image {_safe(target)}: {reason}",
                            retryable=response.status_code == 429 or response.status_code >= 500,
                        )
                    return self._read_limited(response, target, deadline)
            except httpx.TimeoutException:
                raise DownloadError(
                    f"Image {_safe(target)}: no answer within {self.timeout:g} s.", retryable=True
                ) from None
            except httpx.HTTPError as error:
                host = f"Label Studio at {self.url}" if self.is_label_studio(target) else "the image host"
                reason = f"{host} is unreachable ({type(error).__name__}: {error})"
                raise DownloadError(f"Image {_safe(target)}: {reason}.", retryable=True) from None
        raise DownloadError(f"Image {_safe(url)}: more than {_MAX_REDIRECTS} redirects.")

    def _read_limited(self, response: httpx.Response, target: str, deadline: float) -> bytes:
        declared = int(response.headers.get("content-length") or 0)
        if declared > self.max_image_bytes:
            raise DownloadError(_too_big(target, declared, self.max_image_bytes))
        chunks, size = [], 0
        for chunk in response.iter_bytes():  # as they arrive: a chunk size would wait for that many bytes
            size += len(chunk)
            if size > self.max_image_bytes:
                raise DownloadError(_too_big(target, size, self.max_image_bytes))
            if time.monotonic() > deadline:
                raise DownloadError(
                    f"Image {_safe(target)}: download took longer than {3 * self.timeout:g} s.", retryable=True
                )
            chunks.append(chunk)
        return b"".join(chunks)

    # --- transport ------------------------------------------------------------------------------------------

    def is_label_studio(self, url: str) -> bool:
        """Same scheme, host and port as the Label Studio URL: the only place the token may be sent."""
        if not self.url:
            return False
        ours, theirs = urlsplit(self.url), urlsplit(url)
        return (ours.scheme, ours.hostname, ours.port) == (theirs.scheme.lower(), theirs.hostname, theirs.port)

    def _headers(self, url: str) -> dict[str, str]:
        if not self.is_label_studio(url):
            return {}
        try:
            return {"Authorization": self._auth.get_headers()["Authorization"]}
        except ApiError as error:
            raise AuthError(
                f"Label Studio refused to refresh the personal access token: {_detail(error.body)}", error.status_code
            ) from None
        except httpx.HTTPError as error:
            raise UnreachableError(f"Label Studio at {self.url} did not answer: {type(error).__name__}") from None

    def _send(self, method: str, url: str, *, timeout: float | None = None, **kwargs) -> httpx.Response:
        timeout = timeout or self.timeout
        try:
            return self._http.request(method, url, headers=self._headers(url), timeout=timeout, **kwargs)
        except httpx.TimeoutException:
            raise UnreachableError(f"Label Studio at {self.url} did not answer within {timeout:g} s.") from None
        except httpx.HTTPError as error:
            raise UnreachableError(
                f"Label Studio at {self.url} is unreachable ({type(error).__name__}: {error})."
            ) from None

    def _stream(self, url: str):
        """A streamed GET (httpx raises its errors when the ``with`` block is entered)."""
        return self._http.stream("GET", url, headers=self._headers(url))


def _project(item: dict) -> Project:
    return Project(
        id=int(item["id"]),
        title=item.get("title") or "",
        label_config=item.get("label_config") or "",
        task_count=int(item.get("task_number") or 0),
        labeled_count=int(item.get("num_tasks_with_annotations") or 0),
    )


def _task(item: dict) -> Task:
    return Task(
        id=int(item["id"]),
        data=item.get("data") or {},
        project=item.get("project"),
        annotation_count=int(item.get("total_annotations") or 0),
        prediction_count=int(item.get("total_predictions") or 0),
        model_versions=tuple(v for v in str(item.get("predictions_model_versions") or "").split(",") if v),
    )


def _detail(body: Any) -> str:
    text = str(body.get("detail") or body.get("validation_errors") or body) if isinstance(body, dict) else str(body)
    return text[:300].rstrip(".")


def _status_error(response: httpx.Response, what: str) -> LabelStudioError:
    try:
        detail = _detail(response.json())
    except ValueError:  # an error page: its HTML says nothing a log line needs
        html = "html" in response.headers.get("content-type", "").lower()
        detail = "an HTML error page" if html else " ".join(response.text.split())[:300]
    status = response.status_code
    if status in (401, 403):
        return AuthError(
            f"Label Studio refused the token ({status}) for {what}: {detail}. Check the token on Label Studio's "
            "Account & Settings page (a legacy token only works where legacy tokens are enabled).",
            status,
        )
    return LabelStudioError(f"Label Studio answered {status} to {what}: {detail}", status)


def _safe(url: str) -> str:
    """The URL without its query string (presigned URLs carry credentials there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?..." if parts.query else "")


def _too_big(url: str, size: int, limit: int) -> str:
    return (
        f"Image {_safe(url)} is over the size limit ({size:,} > {limit:,} bytes; "
        "set GROUNDLABEL_MAX_IMAGE_BYTES to raise it)."
    )
