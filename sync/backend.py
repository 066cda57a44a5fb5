"""Label Studio's ML-backend protocol (/health, /setup, /predict, /webhook) as a FastAPI router.

A drop-in for Label Studio's Grounding DINO / Grounding SAM backends, minus their failure modes: regions carry
the project's labels, the prompt is found by the TextArea's name, batch retrieval answers one prediction per
task in order (an empty one, with the reason logged, for a task that fails), /setup never loads a model, and
inference runs in a worker thread so health checks answer while a batch is running. Label Studio's smart tools
(a keypoint or box drawn with a ``smart="true"`` tag) are answered with the segmenter's mask for them
(``sync.smart``), from the image and embedding the task's text prompt or earlier clicks left in the caches. A
request Label Studio would never send (not a JSON object, fields of the wrong shape, a prompt the detector cannot
read) is answered 400 with the reason, without echoing the body (it may hold Label Studio's token).
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from pipeline import (
    GroundlabelError,
    LazyPipeline,
    LoadedImage,
    Options,
    Prompt,
    PromptError,
    SettingsError,
    load_image,
    model_version,
    parse_prompt,
)
from pipeline.cache import LRUCache

from .background import Finisher
from .client import LabelStudioClient
from .config import ProjectConfig
from .convert import LabelStudioResult
from .errors import ConfigError, RequestError, SyncError, http_status
from .files import JsonStore
from .outcomes import OutcomePolicy
from .push import Outbox
from .settings import OUTPUTS, BackendSettings
from .smart import SmartRequest
from .tasks import Budget, TaskOutcome, outcomes_of, predict_batches

log = logging.getLogger(__name__)
# Label Studio servers whose connections stay open: one per URL and token that /setup announced.
MAX_CLIENTS = 8
# Decoded task images kept by URL, for clicks that follow a prediction on the same task: ~10 photos of 12 MP.
IMAGE_CACHE_BYTES = 384 << 20
# Brush masks' RLE inside a /predict body: Label Studio sends every task with all its predictions and annotations,
# tens of MB of these numbers, which /predict never reads (it needs ids, data and the prompt).
_RLE_NUMBERS = re.compile(rb'"rle"\s*:\s*\[[0-9,\s]*\]')


@dataclass(frozen=True)
class Credentials:
    url: str
    token: str = field(repr=False)


class MLBackend:
    """The protocol's logic, without HTTP: ``setup`` and ``predict`` take and return Label Studio's JSON."""

    def __init__(self, models: LazyPipeline, settings: BackendSettings):
        self.models = models
        self.settings = settings
        self.prompts = JsonStore(settings.state_dir / "prompts.json")  # the last prompt per project
        self.outputs = JsonStore(settings.state_dir / "outputs.json")  # per project, from /setup's extra_params
        self.outcomes = OutcomePolicy(settings.state_dir, settings.max_retries)  # shared with sync.prelabel
        self.finisher = Finisher(Outbox(settings.outbox_dir), settings.write_batch_bytes)  # tasks past the budget
        self._credentials: dict[str, Credentials] = {}  # per project, from /setup; kept in memory only
        self._clients: OrderedDict[Credentials, LabelStudioClient] = OrderedDict()
        self._public = LabelStudioClient.for_public_images(
            timeout=settings.timeout, max_image_bytes=settings.max_image_bytes, addresses=settings.addresses
        )
        self._images: LRUCache[LoadedImage] = LRUCache(
            64, IMAGE_CACHE_BYTES, sizeof=lambda image: image.width * image.height * 3
        )
        self._lock = threading.Lock()

    def setup(self, body: dict) -> dict:
        """Remember where the project's Label Studio is and the output its connection's ``extra_params`` choose
        (``{"output": "both"}``; Label Studio sends them only here); answer the model version. Never loads a model."""
        project = project_id(body.get("project"))
        if body.get("hostname") and body.get("access_token"):
            with self._lock:
                self._credentials[project] = Credentials(str(body["hostname"]), str(body["access_token"]))
        self._remember_output(project, body.get("extra_params"))
        config = _try_parse(body.get("schema"))
        if config is None:
            return {"model_version": self.model_version(self.settings.options(masks=False))}
        config = self.project_config(project, config)
        options = options_for(config, None, self.settings)
        return {"model_version": self.model_version(options, self.batch_prompt(project, config), config)}

    def project_config(self, project: str, config: ProjectConfig) -> ProjectConfig:
        """``config`` reduced to the labels tags the project's output fills (``ProjectConfig.with_output``)."""
        return config.with_output(self.outputs.get(project) or self.settings.output, self.settings.segmenter)

    def _remember_output(self, project: str, extra_params) -> None:
        """Keep (or, when absent, forget) the project's ``extra_params["output"]``; an unknown one is logged."""
        output = extra_params.get("output") if isinstance(extra_params, dict) else None
        if output is None:
            self.outputs.delete(project)
        elif str(output).lower() in OUTPUTS:
            self.outputs.set(project, str(output).lower())
        else:
            log.warning(
                "Project %s: extra_params output=%r is not one of %s; GROUNDLABEL_OUTPUT=%s applies.",
                project,
                output,
                ", ".join(OUTPUTS),
                self.settings.output,
            )
            self.outputs.delete(project)

    def predict(self, body: dict) -> dict:
        """One prediction per task, in order. Interactive requests (a context) take the prompt from the
        TextArea result; batch requests (context null) use the project's batch prompt (``batch_prompt``).
        Raises ``RequestError`` / ``ConfigError`` for a malformed request and ``PromptError`` for a prompt the
        detector cannot read. Each task is settled by the one outcome policy (``sync.outcomes``): a task that
        fails for good gets an empty prediction; one that may work later gets ``[]`` (Label Studio stores nothing,
        so the next run asks again) until its ``settings.max_retries``-th such failure; both are logged. A batch
        answers within ``settings.predict_budget`` seconds (``Budget``: no batch is started that would end past
        it): tasks past it get ``[]`` now and are finished in the background."""
        request = PredictRequest.parse(body)
        if request.context is None:
            return self._predict(request)
        with self.finisher.interactive():  # background work waits for this one
            return self._predict(request)

    def _predict(self, request: PredictRequest) -> dict:
        project = request.project
        seconds = self.settings.predict_budget if request.context is None else 0  # an annotator waits for the rest
        budget = Budget(seconds) if seconds else None  # from here: loading the models counts too
        smart = SmartRequest.from_results(request.config, request.results)
        if smart is not None:  # its mask goes to the config's mask tag, whatever the text prompts' output
            return {
                "results": [
                    self._predict_smart(project, request.config, task, smart).payload() for task in request.tasks
                ]
            }
        config = self.project_config(project, request.config)
        options = options_for(config, request.results, self.settings)
        typed = _something_to_look_for(config.prompt_from(request.results))
        prompt = parse_prompt(typed) if typed else self.batch_prompt(project, config)
        empty = LabelStudioResult([], 0.0, self.model_version(options, prompt, config))
        if typed is None and request.context is not None:
            log.info("Interactive request for project %s without a prompt in TextArea %r.", project, config.prompt)
            return {"results": [empty.payload() for _ in request.tasks]}
        pipeline = self.models.get()  # a missing detector fails the request (503), not each task
        pipeline.check_prompt(prompt)
        if budget and config.video:  # a video takes minutes, more than Label Studio waits: all in the background
            budget.estimate = math.inf

        def fetch(task: dict) -> LoadedImage | bytes:
            if config.video:  # decoded frame by frame later, by the pipeline
                return self._download(project, config, task)
            return self._image(project, config, task, pipeline.settings.max_pixels, reuse=request.context is not None)

        def answer(outcome: TaskOutcome[dict]) -> LabelStudioResult | None:
            return self._answer(project, outcome, config, empty)

        todo = (
            request.tasks
            if request.context is not None
            else [  # an annotator waits for an interactive answer
                task for task in request.tasks if not self.finisher.owns(project, task.get("id"))
            ]
        )
        batches = predict_batches(todo, fetch, pipeline, config, prompt, options)
        answers = {}
        for batch in budget.paced(batches) if budget else batches:
            for outcome in batch:
                answers[id(outcome.task)] = answer(outcome)
        if len(answers) < len(todo):  # the budget stopped the batch
            self._finish_later(project, todo[len(answers) :], outcomes_of(batches), answer)
        else:
            batches.close()
        # None: a failure that may pass, a task past the budget or one being finished in the background ("nothing yet")
        results = [answers.get(id(task)) for task in request.tasks]
        return {"results": [[] if result is None else result.payload() for result in results]}

    def _predict_smart(self, project: str, config: ProjectConfig, task: dict, smart: SmartRequest) -> LabelStudioResult:
        """The mask for the annotator's smart-tool clicks on ``task``: only the mask decoder runs when the image's
        embedding is cached (a text prompt with masks on the task, or an earlier click, put it there)."""
        name = self.settings.segmenter
        if name is None:
            raise SettingsError("Smart tools need a segmenter, and GROUNDLABEL_SEGMENTER is 'none'.")
        pipeline = self.models.get()
        segmenter = pipeline.segmenters.get(name)
        image = self._image(project, config, task, pipeline.settings.max_pixels, reuse=True)
        masks, scores = segmenter.decode_with_scores(image, [smart.mask_prompt(image.width, image.height)])
        version = self.model_version(replace(self.settings.defaults, segmenter=name))
        answer = smart.answer(config, masks[0], float(scores[0]), version)  # with the config's part
        if not answer.result:
            log.info("Task %s: the smart-tool prompt gave an empty mask.", task.get("id"))
        return answer

    def _image(self, project: str, config: ProjectConfig, task: dict, max_pixels: int, reuse: bool) -> LoadedImage:
        """The task's image. Every image fetched is kept by URL (``IMAGE_CACHE_BYTES`` of decoded pixels); with
        ``reuse`` (interactive requests: an annotator's prompts and clicks on the task they have open) a kept one
        answers, so clicks never download and decode it again. Batch runs always fetch: they are the retries that
        must see the image as it is now."""
        url, client = self._source(project, config, task)
        key = (client.url, url, max_pixels)
        image = self._images.get(key) if reuse else None
        if image is None:
            image = load_image(client.download(url, task_id=task.get("id")), max_pixels)
            self._images.put(key, image)
        return image

    def _download(self, project: str, config: ProjectConfig, task: dict) -> bytes:
        """The task's file as it is (a video), never kept: it is read once, as a stream of frames."""
        url, client = self._source(project, config, task)
        return client.download(url, task_id=task.get("id"))

    def _source(self, project: str, config: ProjectConfig, task: dict) -> tuple[str, LabelStudioClient]:
        """The task's image (or video) URL and the client that may fetch it: the project's Label Studio, or, when
        none is known, the one for public http(s) URLs."""
        data = task.get("data")
        url = config.image_url(data if isinstance(data, dict) else {})
        try:
            return url, self._client(project)
        except SyncError:  # no Label Studio known: an image at a public URL needs none
            if urlsplit(url).scheme.lower() not in ("http", "https"):
                raise
            return url, self._public

    def _finish_later(
        self,
        project: str,
        rest: list[dict],
        outcomes: Iterator[TaskOutcome[dict]],
        answer: Callable[[TaskOutcome[dict]], LabelStudioResult | None],
    ) -> None:
        """Hand the rest of a batch past its budget to the background, or, without a Label Studio to write to,
        say so (the cached model outputs make the next retrieval fast)."""
        try:
            client = self._client(project)
        except SyncError as error:
            self.finisher.last_error = f"Batch tasks past the time budget cannot be written in the background: {error}"
            log.warning("Project %s: %s", project, self.finisher.last_error)
            outcomes.close()
            return
        log.info(
            'Project %s: time budget of %g s spent; %d tasks answered "nothing yet" are finished in the background.',
            project,
            self.settings.predict_budget,
            len(rest),
        )
        self.finisher.finish(project, rest, outcomes, answer, client)

    def _answer(
        self, project: str, outcome: TaskOutcome[dict], config: ProjectConfig, empty: LabelStudioResult
    ) -> LabelStudioResult | None:
        """What Label Studio gets for one task, as the one outcome policy settles it (``sync.outcomes``): its
        prediction, an empty one (failed for good, or a failure that may pass given up on after
        ``settings.max_retries`` runs in a row), or nothing (None: it asks again next run)."""
        task_id = outcome.task.get("id")
        outcome = self.outcomes.settle(project, task_id, outcome, empty)
        if outcome.status == "done" and outcome.result.unmapped:
            log.info(
                "Task %s: prompt phrases %s match none of the labels %s.",
                task_id,
                outcome.result.unmapped,
                config.labels,
            )
        return outcome.result

    def batch_prompt(self, project: str, config: ProjectConfig) -> Prompt:
        """What "Retrieve Predictions" looks for: the prompt last submitted with an annotation (``remember_prompt``),
        else every label of the config. Its hash is part of the model version, so a new batch prompt makes Label
        Studio predict again, while a prompt typed to try it on one task changes nothing."""
        return parse_prompt(_something_to_look_for(self.prompts.get(project)) or config.default_prompt)

    def model_version(self, options: Options, prompt: Prompt | None = None, config: ProjectConfig | None = None) -> str:
        """Names detector, segmenter, thresholds, prompt and (``config``'s part) the tags filled, from the settings'
        resolved detector, so /setup before the first load announces what the predictions after it carry (a video
        config's: with the settings' frame stride, as ``track_video`` names them)."""
        settings = self.models.settings
        stride = settings.video_stride if config is not None and config.video else 1
        version = model_version(settings.detector_spec, options, prompt, mask_cap=settings.max_masks, stride=stride)
        return config.version(version) if config is not None else version

    def remember_prompt(self, body: dict) -> str | None:
        """From a webhook event: the prompt in the submitted annotation's TextArea, kept as the project's batch
        prompt, unless none of its phrases names a label of the project (a batch run with it would store nothing
        but empty predictions) or the detector cannot read it."""
        project = body.get("project") if isinstance(body.get("project"), dict) else {}
        annotation = body.get("annotation") if isinstance(body.get("annotation"), dict) else {}
        config = _try_parse(project.get("label_config"))
        results = annotation.get("result")
        typed = _something_to_look_for(config.prompt_from(results)) if config and _is_result_list(results) else None
        if not typed or project.get("id") is None:
            return None
        prompt = parse_prompt(typed)
        if len(config.label_map().unmapped(prompt.phrases, prompt.explicit_labels)) == len(prompt.phrases):
            log.info(
                "Prompt %r is not kept for project %s's batch runs: it names none of the labels %s.",
                typed,
                project["id"],
                config.labels,
            )
            return None
        if self.models.loaded:
            try:
                self.models.get().check_prompt(prompt)
            except PromptError as error:
                log.info("Prompt %r is not kept for project %s's batch runs: %s", typed, project["id"], error)
                return None
        self.prompts.set(str(project["id"]), typed)
        return typed

    def _client(self, project: str) -> LabelStudioClient:
        """Environment credentials first (the operator chose them), else those Label Studio sent to /setup.
        ``SyncError`` when there are none, or when they are unusable (a URL without http://, a refused token).
        At most ``MAX_CLIENTS`` connections stay open; the least recently used one is closed."""
        settings = self.settings
        with self._lock:
            if settings.label_studio_url and settings.label_studio_token:
                credentials = Credentials(settings.label_studio_url, settings.label_studio_token)
            else:
                credentials = self._credentials.get(project)
            if credentials is None:
                raise SyncError(
                    "Label Studio's URL and token are unknown: set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY."
                )
            if credentials not in self._clients:
                self._clients[credentials] = LabelStudioClient(
                    credentials.url,
                    credentials.token,
                    timeout=settings.timeout,
                    max_image_bytes=settings.max_image_bytes,
                    addresses=settings.addresses,
                )
                while len(self._clients) > MAX_CLIENTS:
                    self._clients.popitem(last=False)[1].close()
            self._clients.move_to_end(credentials)
            return self._clients[credentials]


@dataclass(frozen=True)
class PredictRequest:
    """A /predict body, checked: the tasks, the project id, its labeling config and, for an interactive request,
    the context (None for batch retrieval)."""

    tasks: list[dict]
    project: str
    config: ProjectConfig
    context: dict | None

    @property
    def results(self) -> list[dict] | None:
        """The regions and TextArea text of an interactive request."""
        return None if self.context is None else self.context.get("result")

    @classmethod
    def parse(cls, body: dict) -> PredictRequest:
        """``RequestError`` or ``ConfigError`` name the first field that is not what Label Studio sends."""
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(task, dict) for task in tasks):
            raise RequestError("The request needs a 'tasks' list of task objects, as Label Studio sends to /predict.")
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise RequestError("'params' must be an object.")
        context = params.get("context")
        if context is not None and not (isinstance(context, dict) and _is_result_list(context.get("result", []))):
            raise RequestError("'params.context' must be null or an object whose 'result' is a list of results.")
        return cls(tasks, project_id(body.get("project")), ProjectConfig.parse(body.get("label_config")), context)


def options_for(config: ProjectConfig, results: list[dict] | None, settings: BackendSettings) -> Options:
    """The one place a project's options come from, so /setup announces the version its predictions carry:
    thresholds (box, text, NMS) from the settings, overridden by the config's Number tags' defaults and then by
    the values set in the labeling screen (``results``); each label's own box threshold from the config's
    ``<Label box_threshold=...>``; the segmenter when the config has brush or polygon tags."""
    thresholds = {"box": config.box_threshold, "text": config.text_threshold, "nms": config.nms_threshold}
    thresholds.update(config.thresholds_from(results))
    options = replace(
        settings.defaults,
        box_threshold=_clamp(thresholds["box"], settings.box_threshold),
        text_threshold=_clamp(thresholds["text"], settings.text_threshold),
        nms_threshold=_clamp(thresholds["nms"], settings.nms_threshold),
        segmenter=settings.segmenter if config.wants_masks else None,
    )
    return config.with_label_thresholds(options)


def project_id(value) -> str:
    """Label Studio sends "<project id>.<creation timestamp>"; the id part names the project."""
    return str(value or "").split(".")[0] or "unknown"


def _is_result_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def _something_to_look_for(prompt: str | None) -> str | None:
    """``prompt`` if it names anything to look for; None when it is blank, invisible characters or separators."""
    try:
        return prompt if prompt and parse_prompt(prompt) else None
    except PromptError:
        return None


def _try_parse(xml: str | None) -> ProjectConfig | None:
    try:
        return ProjectConfig.parse(xml)
    except ConfigError as error:
        log.info("Labeling config not usable: %s", error)
        return None


def _clamp(value: float | None, default: float) -> float:
    return default if value is None else min(max(float(value), 0.0), 1.0)


def create_router(models: LazyPipeline, settings: BackendSettings) -> APIRouter:
    """The ML-backend routes. With BASIC_AUTH_USER / BASIC_AUTH_PASS set, every route needs those credentials
    (register the backend in Label Studio with basic auth). Errors become HTTP answers through ``HTTP_STATUS``."""
    backend = MLBackend(models, settings)
    dependencies = [Depends(_basic_auth(*settings.basic_auth))] if settings.basic_auth else []
    router = APIRouter(dependencies=dependencies)

    @router.get("/health")
    async def health() -> dict:  # on the event loop: answers even when every worker thread is busy
        return {
            "status": "UP",
            "model_class": "groundlabel",
            "models": models.status(),
            "background": {"tasks": backend.finisher.running, "error": backend.finisher.last_error},
        }

    @router.post("/setup")
    async def setup(request: Request) -> dict:
        return await run_in_threadpool(backend.setup, await _json_object(request))

    @router.post("/predict")
    async def predict(request: Request) -> dict:
        body = await _json_object(request, without_masks=True)
        try:
            return await run_in_threadpool(backend.predict, body)
        except GroundlabelError as error:  # Label Studio shows only the status: the reason goes to the log too
            log.warning("/predict answered %d: %s", http_status(error), error)
            raise HTTPException(status_code=http_status(error), detail=str(error)) from None

    @router.post("/webhook")
    async def webhook(request: Request) -> dict:
        body = await _json_object(request)
        prompt = await run_in_threadpool(backend.remember_prompt, body)
        return {"status": "ok", "action": body.get("action"), "prompt": prompt}

    return router


async def _json_object(request: Request, without_masks: bool = False) -> dict:
    """The request's JSON object, or a 400 that says what is wrong without repeating the body. ``without_masks``:
    brush RLE numbers are dropped before parsing (``_RLE_NUMBERS``), 8-9x faster on a body of brush predictions and
    without building their Python lists. Parsing runs in a worker thread, so /health answers meanwhile. A client
    that goes away before its body arrived (Label Studio giving up on a huge batch) costs one log line."""
    raw = await _body(request)
    try:
        body = await run_in_threadpool(_parse, raw, without_masks)
    except ValueError:
        raise HTTPException(status_code=400, detail="The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise HTTPException(
            status_code=400, detail=f"The request body must be a JSON object, not {type(body).__name__}."
        )
    return body


async def _body(request: Request) -> bytes:
    """The body's bytes as they arrive; a disconnect part way is logged once and answered 499 (nobody reads it)."""
    body, started = bytearray(), time.monotonic()
    try:
        async for chunk in request.stream():
            body += chunk
    except ClientDisconnect:
        log.warning(
            "%s: the client closed the connection after sending %.1f MB of its body in %.1f s; nothing was done "
            "(Label Studio gives up on a slow batch: select fewer tasks, or see the README on big requests).",
            request.url.path,
            len(body) / 1e6,
            time.monotonic() - started,
        )
        raise HTTPException(status_code=499, detail="The client closed the connection.") from None
    return bytes(body)


def _parse(raw: bytes, without_masks: bool) -> object:
    return json.loads(_RLE_NUMBERS.sub(b'"rle":[]', raw) if without_masks else raw)


def _basic_auth(user: str, password: str):
    security = HTTPBasic()

    def check(credentials: HTTPBasicCredentials = Depends(security)) -> None:
        good_user = secrets.compare_digest(credentials.username.encode(), user.encode())
        good_password = secrets.compare_digest(credentials.password.encode(), password.encode())
        if not (good_user and good_password):
            raise HTTPException(
                status_code=401, detail="Wrong ML-backend credentials.", headers={"WWW-Authenticate": "Basic"}
            )

    return check
