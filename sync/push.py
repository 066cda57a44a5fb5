"""Pushing accepted results into Label Studio without duplicates and without losing them.

A push first looks at the task's existing predictions / annotations: one with the same region ids (which
``to_label_studio`` derives from the geometry) means the result is already there. Failures that may pass
(server down, 5xx, 429, refused token) are retried with backoff, then written to an on-disk outbox that
``flush()`` delivers later. The outbox holds the Label Studio URL and the result, never the token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from pipeline import VERSION_PREFIX

from .client import LabelStudioClient
from .convert import LabelStudioResult
from .errors import AuthError, LabelStudioError
from .files import write_atomic

log = logging.getLogger(__name__)

Kind = Literal["prediction", "annotation"]


@dataclass(frozen=True)
class PushOutcome:
    """What happened to one push: ``created`` (new id), ``exists`` (id of the identical one already there),
    ``queued`` (kept in the outbox; ``error`` says why) or, from ``flush``, ``failed`` (rejected for good)."""

    task_id: int
    kind: Kind
    status: Literal["created", "exists", "queued", "failed"]
    id: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class OutboxItem:
    """One queued push, as stored in its JSON file (the Label Studio URL, never the token)."""

    key: str
    url: str  # the Label Studio it belongs to
    task_id: int
    kind: Kind
    payload: dict  # LabelStudioResult.payload()
    error: str = ""
    attempts: int = 0
    replace_older: bool = False  # once delivered, remove the task's earlier groundlabel predictions


class Outbox:
    """Results waiting for Label Studio, one JSON file each under ``directory`` (``BackendSettings.outbox_dir``).

    Files are written atomically and named by push key, so queueing the same push twice keeps one file.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def put(self, item: OutboxItem) -> Path:
        return write_atomic(self.directory / f"{item.key}.json", json.dumps(asdict(item)))

    def items(self, url: str | None = None) -> list[OutboxItem]:
        """Queued items, oldest first; only those for Label Studio ``url`` when given."""
        if not self.directory.is_dir():
            return []
        paths = sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime)
        items = []
        for path in paths:
            try:
                items.append(OutboxItem(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError) as error:
                log.warning("Outbox file %s is unreadable (%s); left in place.", path, error)
        return [item for item in items if url is None or item.url == url]

    def remove(self, key: str) -> None:
        (self.directory / f"{key}.json").unlink(missing_ok=True)

    def park(self, item: OutboxItem, error: str) -> Path:
        """Keep an item Label Studio rejected for good under ``failed/``, out of the retry loop but not lost."""
        failed = Outbox(self.directory / "failed").put(replace(item, error=error))
        self.remove(item.key)
        return failed


class Pusher:
    """Creates predictions or annotations through ``client``, idempotently, retrying and queueing on failure.

    ``attempts`` tries per push with ``backoff`` seconds doubling between them; then the outbox.
    """

    def __init__(
        self,
        client: LabelStudioClient,
        outbox: Outbox,
        *,
        attempts: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.client = client
        self.outbox = outbox
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._sleep = sleep

    def push(
        self,
        task_id: int,
        result: LabelStudioResult,
        kind: Kind = "prediction",
        attempts: int | None = None,
        replace_older: bool = False,
    ) -> PushOutcome:
        """Deliver ``result`` to task ``task_id`` as a prediction or an annotation, in ``attempts`` tries (default:
        the pusher's; 1 queues at once when Label Studio is known to be away). With ``replace_older``, a
        prediction once delivered (now or from the outbox) replaces the task's earlier groundlabel predictions
        (``remove_older_predictions``).

        Raises ``LabelStudioError`` only for a refusal that retrying cannot fix (e.g. 400 invalid result,
        404 task gone); anything that may pass later ends ``queued`` in the outbox.
        """
        if kind not in ("prediction", "annotation"):
            raise ValueError(f"kind must be 'prediction' or 'annotation', not {kind!r}.")
        item = OutboxItem(
            push_key(self.client.url, task_id, kind, result),
            self.client.url,
            int(task_id),
            kind,
            result.payload(),
            replace_older=replace_older and kind == "prediction",
        )
        outcome = self._deliver(item, max(1, attempts or self.attempts))
        if outcome.status != "queued" and self.pending:
            self.flush()  # Label Studio answers again: deliver what waited for it
        return outcome

    def flush(self) -> list[PushOutcome]:
        """Try every queued item for this client's Label Studio once. Delivered items leave the outbox; one that
        Label Studio rejects for good (400, or 404 for a deleted task) moves to ``outbox/failed/`` with the reason."""
        outcomes = []
        for item in self.outbox.items(self.client.url):
            try:
                outcomes.append(self._deliver(item, 1))
            except LabelStudioError as rejected:
                path = self.outbox.park(item, str(rejected))
                log.error("Push of %s for task %s rejected, kept in %s: %s", item.kind, item.task_id, path, rejected)
                outcomes.append(PushOutcome(item.task_id, item.kind, "failed", error=str(rejected)))
        return outcomes

    @property
    def pending(self) -> int:
        return len(self.outbox.items(self.client.url))

    def _deliver(self, item: OutboxItem, attempts: int) -> PushOutcome:
        error: LabelStudioError | None = None
        for attempt in range(attempts):
            if attempt:
                self._sleep(self.backoff * 2 ** (attempt - 1))
            try:
                outcome = self._create_once(item)
            except AuthError as refused:  # a new token can deliver it later: keep it, don't hammer
                error = refused
                break
            except LabelStudioError as failed:
                if not failed.retryable:
                    self.outbox.remove(item.key)
                    raise
                error = failed
                continue
            self.outbox.remove(item.key)
            if item.replace_older:
                remove_older_predictions(
                    self.client, item.task_id, item.payload["model_version"], item.payload["result"]
                )
            return outcome
        queued = replace(item, error=str(error), attempts=item.attempts + attempts)
        path = self.outbox.put(queued)
        log.warning("Push of %s for task %s queued in %s: %s", item.kind, item.task_id, path, error)
        return PushOutcome(item.task_id, item.kind, "queued", error=str(error))

    def _create_once(self, item: OutboxItem) -> PushOutcome:
        existing = (
            self.client.predictions(item.task_id)
            if item.kind == "prediction"
            else self.client.annotations(item.task_id)
        )
        wanted = _fingerprint(item.payload["result"])
        for entry in existing:
            if _fingerprint(entry.get("result") or []) == wanted:
                return PushOutcome(item.task_id, item.kind, "exists", id=entry.get("id"))
        if item.kind == "prediction":
            created = self.client.create_prediction(
                item.task_id,
                item.payload["result"],
                score=item.payload["score"],
                model_version=item.payload["model_version"],
            )
        else:
            created = self.client.create_annotation(item.task_id, item.payload["result"])
        return PushOutcome(item.task_id, item.kind, "created", id=created.get("id"))


def push_key(url: str, task_id: int, kind: str, result: LabelStudioResult) -> str:
    """Identifies one push: same server, task, kind and regions -> same key."""
    text = f"{url}|{int(task_id)}|{kind}|{_fingerprint(result.result)}"
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def _fingerprint(regions: list[dict]) -> str:
    """Region ids (content-derived, see ``to_label_studio``) in a canonical order."""
    return ",".join(sorted(str(region.get("id")) for region in regions))


def remove_older_predictions(
    client: LabelStudioClient, task_id: int, model_version: str, regions: list[dict] | None = None
) -> int:
    """Delete the task's groundlabel predictions (``model_version`` starting with ``VERSION_PREFIX``) except the
    first one of ``model_version`` (with these ``regions``, when given: the prediction just written). Other
    models' predictions stay. Label Studio has no replace-in-one-write, so this runs right after the write; a
    failure here leaves older ones (logged), never a task without the new one. Returns how many were deleted."""
    wanted, kept, deleted = None if regions is None else _fingerprint(regions), False, 0
    try:
        for entry in client.predictions(task_id):
            version = str(entry.get("model_version") or "")
            if not version.startswith(VERSION_PREFIX):
                continue
            if not kept and version == model_version and wanted in (None, _fingerprint(entry.get("result") or [])):
                kept = True
                continue
            client.delete_prediction(entry["id"])
            deleted += 1
    except LabelStudioError as error:
        log.warning(
            "Task %s: earlier groundlabel predictions not all removed (%s); rerun with replace to finish.",
            task_id,
            error,
        )
    return deleted


def write_predictions(
    client: LabelStudioClient,
    project: int,
    predictions: list[tuple[int, LabelStudioResult]],
    pusher: Pusher,
    replace_older: bool = False,
) -> tuple[int, dict[int, str]]:
    """One request for many predictions. When it fails in a way that may pass, Label Studio may have written them
    all the same (an answer lost to a restart or a timeout), so each is then delivered on its own by ``pusher``,
    which skips what is already there, retries, and keeps in the outbox what Label Studio still does not take.
    Refusals (4xx) are reported. With ``replace_older``, each task's earlier groundlabel predictions are removed once
    its new one is in. Returns (how many were queued, {task id: refusal})."""
    try:
        client.import_predictions(project, [{"task": task, **result.payload()} for task, result in predictions])
        for task, result in predictions if replace_older else []:
            remove_older_predictions(client, task, result.model_version, result.result)
        return 0, {}
    except LabelStudioError as error:
        if not error.retryable:
            log.warning("Label Studio refused %d predictions: %s", len(predictions), error)
            return 0, {task: f"Label Studio refused the prediction: {error}" for task, _ in predictions}
        log.warning("Writing %d predictions failed (%s); delivering them one by one.", len(predictions), error)
    queued, refused = 0, {}
    for task, result in predictions:
        try:  # once one waits in the outbox, Label Studio is away: one quick try each for the others
            queued += (
                pusher.push(task, result, attempts=1 if queued else None, replace_older=replace_older).status
                == "queued"
            )
        except LabelStudioError as error:
            refused[task] = f"Label Studio refused the prediction: {error}"
    if queued:
        log.warning("%d predictions kept in the outbox (%s).", queued, pusher.outbox.directory)
    return queued, refused


class PredictionWriter:
    """Predictions for one project, gathered into bulk writes (``write_predictions``) sized by bytes: a request holds
    at most ``max_bytes`` of JSON (a prediction larger than that goes alone), so masks of big images are split over
    several requests that each end well within Label Studio's patience, while boxes go many to a request. At most
    ``max_count`` wait unwritten (None: no limit), so a stop or a crash loses no more than that.

    ``add`` and ``flush`` return the refusals of the writes they made ({task id: reason}); ``queued`` counts the
    predictions kept in the outbox, ``requests`` the bulk requests sent."""

    def __init__(
        self,
        client: LabelStudioClient,
        project: int,
        pusher: Pusher,
        max_bytes: int,
        max_count: int | None = None,
        replace_older: bool = False,
    ):
        self.client, self.project, self.pusher = client, int(project), pusher
        self.max_bytes, self.max_count, self.replace_older = max_bytes, max_count, replace_older
        self.pending: list[tuple[int, LabelStudioResult]] = []
        self.queued = self.requests = 0
        self._bytes = 1  # the request's "[" and "]", less the first item's ","

    def add(self, task_id: int, result: LabelStudioResult) -> dict[int, str]:
        """Hold ``result`` for task ``task_id``; write what was held first when it would take the request past
        ``max_bytes``, and write at once when the request is full."""
        size = len(json.dumps({"task": task_id, **result.payload()})) + 1  # the separating ","
        refused = self.flush() if self.pending and self._bytes + size > self.max_bytes else {}
        self.pending.append((task_id, result))
        self._bytes += size
        if self._bytes >= self.max_bytes or (self.max_count and len(self.pending) >= self.max_count):
            refused |= self.flush()
        return refused

    def flush(self) -> dict[int, str]:
        """Write what is held, in one request."""
        if not self.pending:
            return {}
        queued, refused = write_predictions(self.client, self.project, self.pending, self.pusher, self.replace_older)
        self.queued += queued
        self.requests += 1
        self.pending, self._bytes = [], 1
        return refused
