"""Pre-annotation on a Ray cluster: ``python -m sync.prelabel --project ID --engine ray [--address ADDR]``.

The same job as the single-process run, with the model work spread over Ray actors. This process (the driver)
pages through the project's tasks, skips what is done, downloads the images ahead of the model and writes the
predictions to Label Studio in bulk: the Label Studio token never leaves it. Each actor holds one pipeline (one
actor per GPU, ``num_gpus=1``; on a CPU cluster, actors of a few cores each) and runs the one task loop,
``sync.tasks.predict_tasks``, on batches of image bytes, so decoding, batching by processed size, the error policy
and the regions are those of the single-process run. An actor that dies is restarted by Ray and its batch run
again; a batch whose actor cannot come back becomes "retry" outcomes. The driver settles every outcome by the
one outcome policy (``sync.outcomes``, in ``sync.prelabel``), so a task ends as it would in a single-process run.

Ray is imported only here and only when ``--engine ray`` is asked for; it is an optional install
(``pip install -r requirements-ray.txt``), not part of the app's requirements.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TypeVar

from pipeline import GroundingPipeline, Options, PipelineSettings, Prompt

from .config import ProjectConfig
from .errors import SyncError
from .prefetch import prefetched
from .tasks import TaskOutcome, outcome_of_error, predict_tasks

log = logging.getLogger(__name__)
T = TypeVar("T")
_PACKAGES = [Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent / "pipeline"]


class Predictor:
    """A Ray actor's state: one pipeline and the project's config (no Label Studio client, no token)."""

    def __init__(self, settings: PipelineSettings, config_xml: str, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.pipeline = GroundingPipeline.from_settings(settings)
        self.config = ProjectConfig.parse(config_xml)

    def predict(
        self, items: list[tuple[int, bytes]], prompt: Prompt, options: Options, batch_size: int | None
    ) -> list[TaskOutcome[int]]:
        """One outcome per (key, image bytes), keyed by the driver's key, in order."""
        outcomes = predict_tasks(
            items, lambda item: item[1], self.pipeline, self.config, prompt, options, batch_size=batch_size, prefetch=1
        )
        return [TaskOutcome(outcome.task[0], outcome.status, outcome.result, outcome.reason) for outcome in outcomes]


@dataclass
class RayEngine:
    """Runs ``predict_tasks``'s contract on a Ray cluster: ``engine(tasks, fetch, pipeline, config, prompt, options)``
    yields one outcome per task (in the order batches finish, not the tasks' order).

    ``address``: an existing cluster ("auto", "host:6379", "ray://host:10001"); None starts a local one unless this
    process is already connected. ``actors``: how many pipelines (default: one per GPU, else one per
    ``cpus_per_actor`` cores). ``images_per_call``: images handed to an actor at a time (several detector forwards
    when larger than the pipeline's batch size).
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: int | None = None
    images_per_call: int = 8
    actor_handles: list = field(default_factory=list, init=False, repr=False)

    def __call__(
        self,
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
        prompt = pipeline.check_prompt(prompt)
        ray = self._start(pipeline.settings, config)
        waiting: dict[int, T] = {}  # the driver's task objects by key, while their batch is out
        in_flight: dict = {}  # ObjectRef -> (actor number, keys of its batch)
        load = [0] * len(self.actor_handles)
        try:
            for chunk in _chunks(prefetched(tasks, fetch, max(prefetch, self.images_per_call)), self.images_per_call):
                items = []
                for task, image in chunk:
                    if isinstance(image, Exception):  # the download failed on the driver: the same policy
                        yield outcome_of_error(task, image)
                    else:
                        waiting[id(task)] = task
                        items.append((id(task), image))
                if items:
                    number = load.index(min(load))  # Ray places the actors; we only pick the least busy one
                    ref = self.actor_handles[number].predict.remote(items, prompt, options, batch_size)
                    in_flight[ref] = (number, [key for key, _ in items])
                    load[number] += 1
                while len(in_flight) >= 2 * len(self.actor_handles):  # two batches per actor: enough to stay busy
                    yield from self._next(ray, in_flight, load, waiting)
            while in_flight:
                yield from self._next(ray, in_flight, load, waiting)
        finally:
            for actor in self.actor_handles:
                ray.kill(actor)
            self.actor_handles = []

    def _start(self, settings: PipelineSettings, config: ProjectConfig):
        try:
            import ray
        except ImportError:
            raise SyncError(
                "--engine ray needs Ray: pip install -r requirements-ray.txt (the same version on every "
                "node of the cluster)."
            ) from None
        if not ray.is_initialized():
            # our two packages travel to the workers with the job; their dependencies must be installed there
            ray.init(
                address=self.address,
                runtime_env={"py_modules": [str(path) for path in _PACKAGES]},
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        per_actor = self.cpus_per_actor or (1 if gpus else min(4, cpus))
        count = self.actors or (gpus or max(1, cpus // per_actor))
        remote = ray.remote(Predictor).options(
            num_cpus=per_actor, num_gpus=1 if gpus else 0, max_restarts=2, max_task_retries=2
        )
        # a GPU actor sees only the GPU Ray gave it (CUDA_VISIBLE_DEVICES), so the settings' device still fits
        self.actor_handles = [remote.remote(settings, config.xml, per_actor) for _ in range(count)]
        log.info("Ray: %d actor(s), %d CPU(s) and %d GPU(s) each.", count, per_actor, 1 if gpus else 0)
        return ray

    @staticmethod
    def _next(ray, in_flight: dict, load: list[int], waiting: dict[int, T]) -> Iterator[TaskOutcome[T]]:
        """The outcomes of the next batch to finish, with the driver's task objects put back."""
        [ref], _ = ray.wait(list(in_flight), num_returns=1)
        number, keys = in_flight.pop(ref)
        load[number] -= 1
        try:
            outcomes = ray.get(ref)
        except ray.exceptions.RayError as error:  # the actor is gone for good: a failure that may pass
            for key in keys:
                yield TaskOutcome(waiting.pop(key), "retry", reason=f"the Ray actor stopped ({type(error).__name__})")
            return
        for outcome in outcomes:
            yield TaskOutcome(waiting.pop(outcome.task), outcome.status, outcome.result, outcome.reason)


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
