"""The one task loop: tasks -> images fetched ahead of the model -> the pipeline in batches -> Label Studio results.

``/predict`` (interactive and "Retrieve Predictions"), ``sync.prelabel`` and the UI's pre-annotation all run it,
so they share one error policy. Each task ends in one of three outcomes, yielded in the tasks' order:

- ``done``: regions to store;
- ``failed``: a permanent reason (not an image, 404, no image in the task, a refused URL): retrying cannot help,
  so an empty prediction is stored and the reason logged;
- ``retry``: a transient reason (timeout, host down, 5xx): nothing is stored, so the next run tries again.

What each outcome leaves in Label Studio (and when a ``retry`` is given up on) is ``sync.outcomes``' one policy.

Before any image is downloaded the prompt is checked against the detector (a prompt it cannot read fails the whole
run with ``PromptError``), and a segmenter whose weights are missing turns the run into boxes only, said once in
the log: boxes are still worth having. A run with a time limit (a batch ``/predict``) goes through ``Budget``,
which stops starting batches that would not end in time.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from pipeline import GroundlabelError, LoadedImage, Options, Prompt, WeightsError, load_image

from .config import ProjectConfig
from .convert import LabelStudioResult, to_label_studio, video_to_label_studio
from .prefetch import prefetched

if TYPE_CHECKING:  # the backend imports this module before any model is loaded: no torch until then
    from pipeline import GroundingPipeline

log = logging.getLogger(__name__)
T = TypeVar("T")
U = TypeVar("U")
Status = Literal["done", "failed", "retry"]


@dataclass(frozen=True)
class TaskOutcome(Generic[T]):
    task: T
    status: Status
    result: LabelStudioResult | None = None  # for "done"
    reason: str = ""  # for "failed" and "retry"


def usable_options(pipeline: GroundingPipeline, options: Options) -> Options:
    """``options``, without the segmenter when its weights cannot be loaded (the reason goes to the log). A
    detector that makes its own masks (SAM 3) needs no segmenter weights."""
    if options.segmenter is None or pipeline.spec_for(options).makes_masks:
        return options
    try:
        pipeline.segmenters.get(options.segmenter)
    except WeightsError as error:
        log.warning("No masks (%s); answering boxes only.", error)
        return replace(options, segmenter=None)
    return options


def predict_tasks(
    tasks: Iterable[T],
    fetch: Callable[[T], bytes],
    pipeline: GroundingPipeline,
    config: ProjectConfig,
    prompt: str | Prompt,
    options: Options,
    *,
    batch_size: int | None = None,
    prefetch: int = 4,
) -> Iterator[TaskOutcome[T]]:
    """One outcome per task of ``tasks``, in order. ``fetch(task)`` returns the task's image bytes; up to
    ``prefetch`` downloads run ahead of the model, and up to ``batch_size`` images (default: the pipeline's) go
    through the detector together (images of one processed size share a forward)."""
    return outcomes_of(
        predict_batches(tasks, fetch, pipeline, config, prompt, options, batch_size=batch_size, prefetch=prefetch)
    )


def predict_batches(
    tasks: Iterable[T],
    fetch: Callable[[T], bytes],
    pipeline: GroundingPipeline,
    config: ProjectConfig,
    prompt: str | Prompt,
    options: Options,
    *,
    batch_size: int | None = None,
    prefetch: int = 4,
) -> Iterator[list[TaskOutcome[T]]]:
    """``predict_tasks``' outcomes, one list per model batch: the unit of work a ``Budget`` times, since the
    model runs when the next list is asked for."""
    prompt = pipeline.check_prompt(prompt)
    options = usable_options(pipeline, options)
    label_map = config.label_map()
    if config.video:
        yield from _video_batches(tasks, fetch, pipeline, config, prompt, options)
        return

    def load(task: T) -> LoadedImage:
        return load_image(fetch(task), pipeline.settings.max_pixels)

    def predict(images: list[LoadedImage]) -> list[LabelStudioResult]:
        return [to_label_studio(result, config) for result in pipeline.batch(images, prompt, options, label_map)]

    batch: list[tuple[T, LoadedImage | Exception]] = []
    for item in prefetched(tasks, load, prefetch):
        batch.append(item)
        if len(batch) >= (batch_size or pipeline.batch_size):
            yield list(_run(batch, predict))
            batch = []
    if batch:
        yield list(_run(batch, predict))


@dataclass(frozen=True)
class _Video:
    data: bytes
    framerate: float  # the task's <Video> frame rate: Label Studio's frame numbering


def _video_batches(
    tasks: Iterable[T],
    fetch: Callable[[T], bytes],
    pipeline: GroundingPipeline,
    config: ProjectConfig,
    prompt: Prompt,
    options: Options,
) -> Iterator[list[TaskOutcome[T]]]:
    """One video per batch (its tracks take the time of many images), the next one downloaded meanwhile."""
    from pipeline.video import track_video

    label_map = config.label_map()

    def load(task: T) -> _Video:
        data = task.get("data") if isinstance(task, dict) else getattr(task, "data", None)  # a /predict or a Task
        return _Video(fetch(task), config.framerate_for(data if isinstance(data, dict) else {}))

    def predict(videos: list[_Video]) -> list[LabelStudioResult]:
        return [
            video_to_label_studio(track_video(pipeline, v.data, prompt, options, label_map), config, v.framerate)
            for v in videos
        ]

    for item in prefetched(tasks, load, 1):
        yield list(_run([item], predict))


def outcomes_of(batches: Iterator[list[TaskOutcome[T]]]) -> Iterator[TaskOutcome[T]]:
    """The outcomes of ``batches``, one by one; closing this closes ``batches`` (and its downloads) at once."""
    with contextlib.closing(batches):
        for batch in batches:
            yield from batch


class Budget:
    """The seconds a run may take. ``paced`` hands out units of work (tasks or batches) while the elapsed time plus
    a running estimate of one unit's time stays within them, so a run under load stops starting work that would
    end late instead of overrunning by a unit. The estimate is a mean of the units measured so far in which recent
    ones weigh more (each measurement counts half), so it follows a machine that gets busier."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self.started = clock()
        self.estimate: float | None = None  # seconds of one unit, from the first one on

    def fits(self) -> bool:
        """Whether one more unit is expected to end within the budget (the first one always is: nothing is known)."""
        if self.estimate is None:
            return True
        return self._clock() - self.started + self.estimate <= self.seconds

    def paced(self, units: Iterator[U]) -> Iterator[U]:
        """The units of ``units`` while the next one fits; each is timed from when it is asked for until the next
        is (the consumer's handling of it included). Stops without drawing the next one: ``units`` keeps the rest."""
        mark = self._clock()
        while self.fits():
            try:
                unit = next(units)
            except StopIteration:
                return
            yield unit
            now = self._clock()
            spent, mark = now - mark, now
            self.estimate = spent if self.estimate is None else (self.estimate + spent) / 2


def _run(
    batch: list[tuple[T, LoadedImage | Exception]], predict: Callable[[list[LoadedImage]], list[LabelStudioResult]]
) -> Iterator[TaskOutcome[T]]:
    """Outcomes for one batch; a batch the pipeline fails on is run image by image, so one bad image fails alone."""
    ready = [(task, image) for task, image in batch if not isinstance(image, Exception)]
    try:
        results = predict([image for _, image in ready]) if ready else []
        answers = {id(task): result for (task, _), result in zip(ready, results)}
    except Exception:  # noqa: BLE001 - find the image it failed on (cached stages make the reruns cheap)
        answers = {id(task): _alone(predict, image) for task, image in ready}
    for task, image in batch:
        answer = answers.get(id(task), image)
        done = isinstance(answer, LabelStudioResult)
        yield TaskOutcome(task, "done", answer) if done else outcome_of_error(task, answer)


def _alone(
    predict: Callable[[list[LoadedImage]], list[LabelStudioResult]], image: LoadedImage
) -> LabelStudioResult | Exception:
    try:
        return predict([image])[0]
    except Exception as error:  # noqa: BLE001 - becomes this task's outcome
        return error


def outcome_of_error(task: T, error: Exception) -> TaskOutcome[T]:
    """``retry`` for what may pass (errors that say they are retryable), ``failed`` for everything else."""
    if getattr(error, "retryable", False):
        return TaskOutcome(task, "retry", reason=str(error))
    if not isinstance(error, GroundlabelError):  # a bug, not the task: keep the traceback for the log
        log.error("Unexpected error on a task", exc_info=error)
        return TaskOutcome(task, "failed", reason=f"unexpected error ({type(error).__name__}): {error}")
    return TaskOutcome(task, "failed", reason=str(error))
