"""Pre-annotate a whole Label Studio project: ``python -m sync.prelabel --project ID --prompt "dog. cat"``.

Images are downloaded and decoded by a small thread pool ahead of the model (a bounded prefetch), the model
sees them in batches where the device gains from it, predictions are written to Label Studio in bulk requests
sized by bytes, and tasks that already hold a prediction of the same model_version are skipped, so a rerun resumes
where the last run stopped. Each task is settled by the ML backend's outcome policy (``sync.outcomes``): a task
that fails for good gets an empty prediction, one that may pass gets nothing until its N-th such failure in a row
(``GROUNDLABEL_MAX_RETRIES``), counted in the same state file as the ML backend's, so no task is retried forever.
Ctrl-C stops after the current batch is written: nothing is half-written. ``--replace`` removes each task's earlier
groundlabel predictions (other models' stay) once its new one is in, so changed settings replace rather than pile
up.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from tqdm.auto import tqdm

from pipeline import VERSION_PREFIX, GroundingPipeline, GroundlabelError, Options
from pipeline.console import quiet_known_warnings

from .client import LabelStudioClient
from .convert import LabelStudioResult
from .outcomes import OutcomePolicy
from .push import Outbox, PredictionWriter, Pusher, remove_older_predictions
from .settings import DEFAULT_WRITE_BATCH_BYTES, BackendSettings
from .tasks import TaskOutcome, predict_tasks, usable_options

Engine = Callable[..., Iterator[TaskOutcome]]  # predict_tasks' signature


@dataclass
class PrelabelProgress:
    """Counts so far; ``total`` is the number of tasks considered (None until known)."""

    total: int | None = None
    done: int = 0
    skipped: int = 0
    # task id -> reason: an empty prediction was stored, or (a failure that may pass) nothing: a rerun retries
    failed: dict[int, str] = field(default_factory=dict)
    queued: int = 0  # predictions kept in the outbox because Label Studio refused or was down
    notes: dict[int, str] = field(default_factory=dict)  # task id -> what the pipeline cut (e.g. masks past the cap)
    started: float = field(default_factory=time.monotonic)
    interrupted: bool = False

    @property
    def finished(self) -> int:
        return self.done + self.skipped + len(self.failed)

    @property
    def rate(self) -> float:
        """Pre-annotated images per second."""
        return self.done / max(time.monotonic() - self.started, 1e-9)

    def summary(self) -> str:
        lines = [
            f"{'Interrupted' if self.interrupted else 'Finished'}: {self.done} pre-annotated, "
            f"{self.skipped} skipped (already predicted by this model version), {len(self.failed)} failed"
            f"{f', {self.queued} kept in the outbox' if self.queued else ''}; {self.rate:.2f} images/s."
        ]
        lines += [f"  task {task_id}: {reason}" for task_id, reason in self.failed.items()]
        lines += [f"  task {task_id}: {note}" for task_id, note in self.notes.items()]
        return "\n".join(lines)


@dataclass(frozen=True)
class PrelabelJob:
    project: int
    prompt: str | None = None  # None: the labels of the project's config
    options: Options = Options()
    only_unlabeled: bool = False
    limit: int | None = None
    batch_size: int | None = None  # images per detector forward; None: the pipeline's (4 on a GPU, 1 on a CPU)
    write_batch: int = 10  # predictions that may wait unwritten (one request holds at most write_bytes of them)
    write_bytes: int = DEFAULT_WRITE_BATCH_BYTES  # JSON per bulk request to Label Studio
    prefetch: int = 4  # images downloaded and decoded ahead of the model
    replace_older: bool = False  # remove each task's earlier groundlabel predictions once its new one is written


def prelabel(
    client: LabelStudioClient,
    pipeline: GroundingPipeline,
    job: PrelabelJob,
    outbox: Outbox,
    on_progress: Callable[[PrelabelProgress], None] = lambda progress: None,
    stop: threading.Event | None = None,
    engine: Engine = predict_tasks,
    outcomes: OutcomePolicy | None = None,
) -> PrelabelProgress:
    """Run ``job``; returns the final counts. Raises only when the project itself is unusable. A task whose image
    fails is settled by ``outcomes`` (default: the counts kept in the state directory that holds ``outbox``, as
    ``BackendSettings`` lays it out, with N = 3) and listed in ``failed`` with its reason. Setting ``stop`` (or
    Ctrl-C in the main thread) ends the run after the current task, with what is done written. ``engine`` runs the
    model work: ``predict_tasks`` in this process, or a ``sync.ray_engine.RayEngine`` on a Ray cluster."""
    config = client.project(job.project).config()
    prompt = pipeline.check_prompt(job.prompt or config.default_prompt)  # a bad prompt fails here, not per task
    options = usable_options(pipeline, config.with_label_thresholds(job.options))
    stride = pipeline.settings.video_stride if config.video else 1  # a video's frames the detector sees
    version = config.version(pipeline.model_version(options, prompt, stride=stride))  # as the results are named
    policy = outcomes or OutcomePolicy(outbox.directory.parent, BackendSettings.max_retries)
    empty = LabelStudioResult([], 0.0, version)  # what a task that failed for good gets
    pusher = Pusher(client, outbox)  # for predictions the bulk write could not deliver
    writer = PredictionWriter(client, job.project, pusher, job.write_bytes, job.write_batch, job.replace_older)
    progress = PrelabelProgress()

    def written(refused: dict[int, str]) -> None:
        progress.queued = writer.queued
        for task_id, reason in refused.items():
            if task_id not in progress.failed:
                progress.done -= 1
            progress.failed[task_id] = reason

    todo = []
    for task in client.iter_tasks(job.project, unlabeled_only=job.only_unlabeled):
        if job.limit is not None and len(todo) >= job.limit:
            break
        if version in task.model_versions:
            progress.skipped += 1
            if job.replace_older and any(
                v != version and str(v).startswith(VERSION_PREFIX) for v in task.model_versions
            ):
                remove_older_predictions(client, task.id, version)
        else:
            todo.append(task)
    progress.total = len(todo) + progress.skipped
    on_progress(progress)
    run = engine(
        todo,
        lambda task: client.task_image(task, config),
        pipeline,
        config,
        prompt,
        options,
        batch_size=job.batch_size,
        prefetch=job.prefetch,
    )
    with stop_on_ctrl_c(stop or threading.Event()) as stop, contextlib.closing(run):
        for outcome in run:
            settled = policy.settle(job.project, outcome.task.id, outcome, empty)
            if settled.status == "done":
                progress.done += 1
            else:
                progress.failed[outcome.task.id] = settled.reason
            if settled.result is not None:
                if settled.result.notes:
                    progress.notes[outcome.task.id] = " ".join(settled.result.notes)
                written(writer.add(outcome.task.id, settled.result))
            on_progress(progress)
            if stop.is_set():
                progress.interrupted = True
                break
    written(writer.flush())
    on_progress(progress)
    return progress


@contextlib.contextmanager
def stop_on_ctrl_c(stop: threading.Event) -> Iterator[threading.Event]:
    """Ctrl-C sets ``stop``, checked between tasks, instead of raising in the middle of a write."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sync.prelabel", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--project", type=int, required=True)
    parser.add_argument("--prompt", help="default: the label values of the project's labeling config")
    parser.add_argument("--masks", metavar="SEGMENTER", help="mobile_sam, sam_vit_b, ... (default: boxes only)")
    parser.add_argument("--box-threshold", type=float, help="default: $BOX_THRESHOLD or 0.35")
    parser.add_argument("--text-threshold", type=float, help="default: $TEXT_THRESHOLD or 0.25")
    parser.add_argument(
        "--label-threshold",
        action="append",
        metavar="LABEL=T",
        help="a label's own box threshold, e.g. cat=0.4 (repeat it); default: the config's <Label box_threshold=...>",
    )
    parser.add_argument(
        "--nms-threshold",
        type=float,
        help="IoU above which a box of the same label is dropped (default: $NMS_THRESHOLD or 0.5; 1 keeps all)",
    )
    parser.add_argument("--only-unlabeled", action="store_true", help="skip tasks that already have an annotation")
    parser.add_argument("--limit", type=int, help="pre-annotate at most this many tasks")
    parser.add_argument(
        "--replace",
        action="store_true",
        help="remove each task's earlier groundlabel predictions (other models' stay) once the new "
        "one is written, so a task holds one of ours",
    )
    parser.add_argument("--batch-size", type=int, help="images per detector forward (default: 4 on GPU, 1 on CPU)")
    parser.add_argument(
        "--video-stride",
        type=int,
        metavar="N",
        help="a video project: the detector on every N-th frame (default: $GROUNDLABEL_VIDEO_STRIDE or 1; "
        "part of the model version)",
    )
    parser.add_argument(
        "--write-batch",
        type=int,
        help="most predictions per request to Label Studio (default: 10; 100 with --engine ray, where Label "
        "Studio's write rate is the ceiling: docs/scaling.md); a request also holds at most "
        "$GROUNDLABEL_WRITE_BATCH_BYTES of JSON (default 4 MiB)",
    )
    parser.add_argument("--url", help="Label Studio URL (default: $LABEL_STUDIO_URL)")
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process; ray: actors on a Ray cluster (pip install -r requirements-ray.txt; "
        "see docs/scaling.md)",
    )
    parser.add_argument(
        "--address",
        help="with --engine ray: the cluster (auto, HOST:6379, ray://HOST:10001); "
        "default: a local Ray started for this run",
    )
    parser.add_argument(
        "--actors", type=int, help="with --engine ray: pipelines to run (default: one per GPU, else one per 4 CPUs)"
    )
    parser.add_argument("--cpus-per-actor", type=int, help="with --engine ray: CPUs (torch threads) per actor")
    return parser


def _settings(args: argparse.Namespace) -> BackendSettings:
    """The environment's settings, with the flags that set the pipeline's (``--video-stride``)."""
    settings = BackendSettings.from_env()
    if args.video_stride is None:
        return settings
    return replace(settings, pipeline=replace(settings.pipeline, video_stride=args.video_stride))


def _job(args: argparse.Namespace, settings: BackendSettings) -> PrelabelJob:
    """The run the flags ask for, the environment's settings filling what they leave out."""
    options = Options(
        settings.box_threshold if args.box_threshold is None else args.box_threshold,
        settings.text_threshold if args.text_threshold is None else args.text_threshold,
        args.masks,
        nms_threshold=settings.nms_threshold if args.nms_threshold is None else args.nms_threshold,
        label_thresholds=args.label_threshold,
    )
    return PrelabelJob(
        args.project,
        args.prompt,
        options,
        args.only_unlabeled,
        args.limit,
        args.batch_size,
        args.write_batch or (100 if args.engine == "ray" else 10),
        write_bytes=settings.write_batch_bytes,
        replace_older=args.replace,
    )


def _engine(args: argparse.Namespace) -> Engine:
    if args.engine != "ray":
        return predict_tasks
    from .ray_engine import RayEngine  # Ray is imported only when asked for

    return RayEngine(args.address, args.actors, args.cpus_per_actor)


def _run_with_progress_bar(
    args: argparse.Namespace, settings: BackendSettings, job: PrelabelJob, engine: Engine
) -> PrelabelProgress:
    client = LabelStudioClient.from_settings(settings, args.url)
    pipeline = GroundingPipeline.from_settings(settings.pipeline)
    with client, tqdm(unit="img", desc="pre-annotating") as bar:

        def show(progress: PrelabelProgress) -> None:
            bar.total = progress.total
            bar.n = progress.finished
            bar.set_postfix(done=progress.done, skipped=progress.skipped, failed=len(progress.failed), refresh=False)
            bar.refresh()

        outbox, outcomes = Outbox(settings.outbox_dir), OutcomePolicy(settings.state_dir, settings.max_retries)
        return prelabel(client, pipeline, job, outbox, show, engine=engine, outcomes=outcomes)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    quiet_known_warnings()
    try:  # settings are checked before anything loads: a typo costs one line, not a traceback
        settings = _settings(args)
        settings.configure_logging()
        job = _job(args, settings)
        progress = _run_with_progress_bar(args, settings, job, _engine(args))
    except GroundlabelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(progress.summary())
    return 130 if progress.interrupted else (1 if progress.failed else 0)


if __name__ == "__main__":
    sys.exit(main())
