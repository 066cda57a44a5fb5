"""Fine-tune the app's detector on a Label Studio project's submitted annotations, measured before it is used:
``python -m sync.finetune --project 3 --out models/project3 [--holdout 0.2] [--steps 300]``.

Each task's newest submitted annotation (as ``sync.quality`` reads them) gives objects in pixels of the upright
image (``sync.convert.from_label_studio``); its labels are the config's, and a label's phrases are its name and its
``predicted_values``. A deterministic share of the tasks (``--holdout``, picked by a hash of the task id) is kept
out of training. The detector the settings choose (``GROUNDLABEL_DETECTOR``, a Grounding DINO-family model) trains
through ``pipeline.training``, the same loss and loop as the toy models, one image per step (each resized by its
own processor), each step's prompt one phrase per label in a shuffled order. Both the base and the fine-tuned
detector are then measured on the held-out tasks with ``sync.quality``'s per-label precision and recall.

``--out`` becomes a ``save_pretrained`` directory (model, processor, a README.md model card) that loads offline as
a local detector: ``GROUNDLABEL_DETECTOR=DIR``. Ctrl-C (or every ``--save-every`` steps) writes
``DIR/training-state.pt``; the same command again resumes from it, and a larger ``--steps`` continues a finished
run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline import DetectionResult, GroundlabelError, ImageError, LoadedImage, Options, SettingsError, load_image
from pipeline.cache import LRUCache
from pipeline.console import quiet_known_warnings
from pipeline.prompts import Prompt

from .client import LabelStudioClient, Task
from .config import ProjectConfig
from .convert import from_label_studio
from .errors import ConfigError, DownloadError, TrainingDataError
from .prelabel import stop_on_ctrl_c
from .quality import LabelCounts, count, matched, submitted_annotation, table
from .settings import BackendSettings

if TYPE_CHECKING:  # torch loads with the detector, not with the command's --help
    from pipeline import GroundingPipeline, PipelineSettings

STATE_FILE = "training-state.pt"  # the resumable run: weights, optimiser moments, step
CARD_FILE = "README.md"
IMAGE_CACHE_BYTES = 1 << 30  # decoded images kept between steps; the rest are downloaded again when their turn comes


@dataclass(frozen=True)
class Example:
    """One annotated task: its objects (config labels only) in pixels of its upright image."""

    task: Task
    objects: DetectionResult


@dataclass
class Examples:
    """A project's annotated tasks, split into training and held-out ones, and what was left out and why."""

    train: list[Example]
    held_out: list[Example]
    skipped_images: dict[int, str] = field(default_factory=dict)  # task id -> why its image was not used
    unknown_labels: Counter = field(default_factory=Counter)  # label not in the config -> objects left out


@dataclass(frozen=True)
class FinetuneJob:
    project: int
    out: Path
    holdout: float = 0.2
    steps: int = 300
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup: int | None = None  # None: a tenth of the steps
    save_every: int = 100
    seed: int = 0


@dataclass
class FinetuneReport:
    project: int
    base: str  # what the base detector loads from
    train_images: int
    held_out: int
    steps: int  # steps trained in all (this run and earlier ones)
    start: int  # the step this run started at (> 0: resumed)
    losses: list[float] = field(default_factory=list)  # this run's, per step
    before: dict[str, LabelCounts] = field(default_factory=dict)
    after: dict[str, LabelCounts] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False

    def loss_line(self) -> str:
        if not self.losses:
            return "no training step ran"
        tenth = max(1, len(self.losses) // 10)
        first, last = np.mean(self.losses[:tenth]), np.mean(self.losses[-tenth:])
        return f"loss {first:.4f} -> {last:.4f} (mean of the first and last {tenth} of this run's steps)"

    def text(self) -> str:
        head = f"Fine-tuned {self.base} on project {self.project}: {self.train_images} images, {self.steps} steps"
        lines = [head + (f" (resumed at step {self.start})" if self.start else ""), *self.notes, self.loss_line()]
        for name, counts in (("base detector", self.before), ("fine-tuned detector", self.after)):
            lines += ["", f"{name} on {self.held_out} held-out tasks:"]
            lines += table(counts) if counts else ["  (no held-out tasks)"]
        return "\n".join(lines)


def label_phrases(config: ProjectConfig) -> dict[str, tuple[str, ...]]:
    """Each label's prompt phrases: its name and its ``predicted_values`` (lower case, each once)."""
    phrases: dict[str, list[str]] = {label: [label.lower()] for label in config.labels}
    for control in config.controls:
        for label, aliases in control.aliases.items():
            phrases[label] += [alias.lower() for alias in aliases]
    return {label: tuple(dict.fromkeys(p)) for label, p in phrases.items()}


def read_examples(
    client: LabelStudioClient, project: int, config: ProjectConfig, holdout: float, load: Callable[[Task], LoadedImage]
) -> Examples:
    """Every task of ``project`` with a submitted annotation, its objects in pixels of its (EXIF-upright) image;
    ``TrainingDataError`` when none can train. A task whose image cannot be fetched or decoded is left out with its
    reason; objects whose label the config does not have are left out and counted."""
    labels = set(config.labels)
    found: list[Example] = []
    skipped: dict[int, str] = {}
    unknown: Counter = Counter()
    annotated = 0
    for task in client.iter_tasks(project):
        annotation = submitted_annotation(client, task)
        if annotation is None:
            continue
        annotated += 1
        try:
            image = load(task)
        except (ImageError, DownloadError, ConfigError) as error:
            skipped[task.id] = str(error)
            continue
        # percent of the image as Label Studio shows it: the upright size, where a region does not name its own
        # (one made through the API may not)
        size = {"original_width": image.width, "original_height": image.height}
        regions = [{**size, **region} for region in annotation.get("result") or []]
        objects = from_label_studio(regions, image.width, image.height)
        unknown.update(label for label in objects.labels if label not in labels)
        found.append(Example(task, objects[[i for i, label in enumerate(objects.labels) if label in labels]]))
    if not annotated:
        raise TrainingDataError(
            f"Project {project} has no submitted annotations: label some tasks in Label Studio (or accept their "
            "predictions and submit them), then run this again."
        )
    if not found:
        raise TrainingDataError(
            f"None of project {project}'s {annotated} annotated tasks has an image that could be used: "
            + "; ".join(f"task {task}: {reason}" for task, reason in list(skipped.items())[:3])
        )
    if not any(len(example.objects) for example in found):
        named = ", ".join(repr(label) for label in unknown) or "none"
        raise TrainingDataError(
            f"No annotated object in project {project} has a label of its labeling config "
            f"({', '.join(config.labels)}); the annotations use {named}. Add those labels to the config, or "
            "relabel the objects."
        )
    train, held_out = split(found, holdout)
    return Examples(train, held_out, skipped, unknown)


def split(examples: list[Example], holdout: float) -> tuple[list[Example], list[Example]]:
    """(training, held-out): the ``holdout`` share of tasks with the lowest hash of their id is held out (at least
    one when ``holdout`` > 0), so the same tasks stay out on every run and a new task does not move the others."""
    ranked = sorted(examples, key=lambda e: hashlib.sha1(str(e.task.id).encode()).hexdigest())
    count_out = min(len(ranked) - 1, max(1, round(len(ranked) * holdout))) if holdout > 0 else 0
    if holdout > 0 and count_out < 1:
        raise TrainingDataError(
            f"Only {len(ranked)} annotated task(s): at least 2 are needed to hold one out; annotate more or pass "
            "--holdout 0 (then nothing is measured)."
        )
    held = {id(e) for e in ranked[:count_out]}
    return [e for e in examples if id(e) not in held], [e for e in examples if id(e) in held]


def training_batch(detector, example: Example, image: LoadedImage, phrases: dict[str, tuple[str, ...]], rng):
    """One image as ``pipeline.training`` reads it: pixels resized by the detector's own preprocessing, a prompt of
    one phrase per label in a shuffled order (``rng``), and the objects' phrase indices and normalised boxes."""
    import torch

    order = [list(phrases)[i] for i in rng.permutation(len(phrases))]
    chosen = [phrases[label][int(rng.integers(len(phrases[label])))] for label in order]
    prompt = Prompt(phrases=tuple(chosen))
    detector.tokenize(prompt)  # a prompt longer than the text encoder reads fails here with a sentence
    text = detector.processor.tokenizer([prompt.text], return_tensors="pt")
    objects = example.objects
    x0, y0, x1, y1 = np.clip(objects.xyxy / np.array([image.width, image.height] * 2), 0, 1).T
    keep = (x1 > x0) & (y1 > y0)
    boxes = np.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], -1)[keep]
    classes = [order.index(label) for label, kept in zip(objects.labels, keep) if kept]
    target = {
        "class_labels": torch.tensor(classes, dtype=torch.long),
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
    }
    return {**detector.preprocess(image), **text}, [target]


def evaluate(
    pipeline: GroundingPipeline,
    examples: list[Example],
    load: Callable[[Task], LoadedImage],
    config: ProjectConfig,
    options: Options,
) -> dict[str, LabelCounts]:
    """Per-label precision / recall of ``pipeline`` on ``examples`` against their annotations (``sync.quality``'s
    matching), with the project's labels and their phrases as the prompt."""
    pairs = []
    for example in examples:
        result = pipeline(load(example.task), config.default_prompt, options, config.label_map())
        mapped = result[[i for i, label in enumerate(result.labels) if label is not None]]
        pairs.append(matched(example.task.id, "", mapped, example.objects))
    return count(pairs)


def finetune(
    client: LabelStudioClient,
    settings: PipelineSettings,
    job: FinetuneJob,
    options: Options,
    *,
    on_step: Callable[[int, float], None] = lambda step, loss: None,
    stop: threading.Event | None = None,
) -> FinetuneReport:
    """Run ``job``: read the annotations, measure the base detector, train (resuming ``job.out``'s state), save
    the model card and the directory, measure the fine-tuned one. ``stop`` (Ctrl-C in ``main``) ends training after
    the current step with the state saved; the report says ``interrupted`` and nothing else is written."""
    import torch

    from pipeline import GroundingPipeline, training

    stop = stop or threading.Event()
    spec = _trainable_spec(settings, job)
    config = client.project(job.project).config()
    options = config.with_label_thresholds(replace(options, segmenter=None))
    settings = replace(settings, runtime="torch")  # training needs the torch model, whatever serves it
    load = _image_loader(client, config, settings.max_pixels)
    data = read_examples(client, job.project, config, job.holdout, load)
    state_path = job.out / STATE_FILE
    state = _resume_state(state_path, job, spec.load_from)
    pipeline = GroundingPipeline.from_settings(settings)
    start = int(state["step"]) if state else 0
    steps = max(job.steps, start)  # a finished run asked for fewer steps than it made: nothing more to train
    report = FinetuneReport(job.project, spec.load_from, len(data.train), len(data.held_out), steps, start)
    report.notes += _notes(data)
    if start >= job.steps:
        report.notes.append(f"{job.out} was already trained for {start} steps: pass a larger --steps to continue.")
    report.before = evaluate(pipeline, data.held_out, load, config, options)
    detector = pipeline.detector
    model = detector.model.float()
    if state:
        model.load_state_dict(state["model"])
    warmup = job.warmup if job.warmup is not None else max(1, steps // 10)
    optimizer, schedule = training.optimizer_for(
        model, job.lr, job.weight_decay, steps, warmup, start, state["optimizer"] if state else None
    )
    phrases = label_phrases(config)

    def batch_at(step: int) -> training.Batch:
        epoch, index = divmod(step, len(data.train))
        example = data.train[np.random.default_rng([job.seed, epoch]).permutation(len(data.train))[index]]
        rng = np.random.default_rng([job.seed, step, 1])
        return training_batch(detector, example, load(example.task), phrases, rng)

    saved = [start]

    def save(step: int) -> None:
        if saved[0] == step and state_path.is_file():
            return
        saved[0] = step
        _save_state(state_path, job, spec.load_from, step, model, optimizer)

    def after_step(step: int, loss: float) -> bool:
        report.losses.append(loss)
        on_step(step, loss)
        if (step + 1) % job.save_every == 0:
            save(step + 1)
        return stop.is_set()

    torch.manual_seed(job.seed)
    done = training.train_steps(
        model, batch_at, optimizer, schedule, steps=steps, start=start, device=detector.device, after_step=after_step
    )
    save(done)
    report.steps = done
    if done < steps:
        report.interrupted = True
        return report
    optimizer.state.clear()  # the moments (twice the model's size) are in the saved state; not needed to measure
    training.save_detector(model.eval(), detector.processor, job.out)
    tuned = GroundingPipeline.from_settings(replace(settings, detector=str(job.out), offline=True))
    report.after = evaluate(tuned, data.held_out, load, config, options)
    (job.out / CARD_FILE).write_text(model_card(report, job, client.url))
    return report


def _trainable_spec(settings: PipelineSettings, job: FinetuneJob):
    """The settings' detector, when ``pipeline.training`` fits its family and ``job.out`` is not its own directory."""
    from pipeline.families import detector_family
    from pipeline.registry import FAMILIES

    spec = settings.detector_spec
    family = FAMILIES.get(detector_family(spec, settings.offline))
    if family is None or not family.trainable:
        trainable = " and ".join(f.title for f in FAMILIES.values() if f.trainable)
        raise SettingsError(
            f"sync.finetune trains {trainable} detectors; GROUNDLABEL_DETECTOR={spec.name} is "
            f"{family.title if family else 'another family'}: choose one of those."
        )
    if Path(spec.load_from).resolve() == job.out.resolve():
        raise TrainingDataError(f"--out {job.out} is the base detector's own directory: write the fine-tune elsewhere.")
    return spec


def _image_loader(client: LabelStudioClient, config: ProjectConfig, max_pixels: int) -> Callable[[Task], LoadedImage]:
    """A task's image, downloaded and decoded once: training revisits every image once per epoch."""
    images: LRUCache[LoadedImage] = LRUCache(100_000, IMAGE_CACHE_BYTES, lambda image: image.width * image.height * 3)

    def load(task: Task) -> LoadedImage:
        image = images.get(task.id)
        if image is None:
            image = load_image(client.task_image(task, config), max_pixels)
            images.put(task.id, image)
        return image

    return load


def _save_state(path: Path, job: FinetuneJob, base: str, step: int, model, optimizer) -> None:
    """What a rerun resumes from, written whole (a temporary file renamed) so an interrupt never leaves half of it."""
    import torch

    job.out.mkdir(parents=True, exist_ok=True)
    body = {
        "project": job.project,
        "base": base,
        "holdout": job.holdout,
        "seed": job.seed,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
    }
    torch.save(body, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)


def _resume_state(path: Path, job: FinetuneJob, base: str) -> dict | None:
    """The saved state of an earlier run into ``job.out``, when there is one; ``TrainingDataError`` when it is
    another project's or base model's, or held out another share (its held-out tasks would be trained on)."""
    if not path.is_file():
        return None
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    theirs = (state.get("project"), state.get("base"), state.get("holdout"), state.get("seed"))
    if theirs != (job.project, base, job.holdout, job.seed):
        raise TrainingDataError(
            f"{job.out} holds a fine-tune of project {theirs[0]} from {theirs[1]} (holdout {theirs[2]}, seed "
            f"{theirs[3]}), not this one: pass another --out, or delete {path} to start over."
        )
    return state


def _notes(data: Examples) -> list[str]:
    notes = []
    if data.skipped_images:
        notes.append(f"{len(data.skipped_images)} task(s) left out, their image unusable:")
        notes += [f"  task {task}: {reason}" for task, reason in data.skipped_images.items()]
    if data.unknown_labels:
        listed = ", ".join(f"{label!r} ({n})" for label, n in data.unknown_labels.items())
        notes.append(f"Objects left out, their label is not in the labeling config: {listed}.")
    return notes


def model_card(report: FinetuneReport, job: FinetuneJob, url: str) -> str:
    """The README.md of a fine-tuned directory: where it came from and how it measured."""

    def block(counts: dict[str, LabelCounts]) -> str:
        return "\n".join(["```", *(table(counts) if counts else ["(no held-out tasks)"]), "```"])

    return "\n".join(
        [
            f"# {Path(report.base).name} fine-tuned on Label Studio project {report.project}",
            "",
            f"- source: project {report.project} at {url}, its submitted annotations",
            f"- base detector: {report.base}",
            f"- images: {report.train_images} trained on, {report.held_out} held out (holdout {job.holdout:g})",
            f"- steps: {report.steps} (one image per step, peak learning rate {job.lr:g}, seed {job.seed})",
            f"- made by `python -m sync.finetune` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            "",
            f"Use it: `GROUNDLABEL_DETECTOR={job.out.resolve()}` (a local detector directory; loads offline).",
            f"`{STATE_FILE}` is only needed to continue training (`--steps` larger than {report.steps}).",
            "",
            "## Held-out precision and recall (IoU >= 0.5)",
            "",
            "Base detector:",
            "",
            block(report.before),
            "",
            "Fine-tuned:",
            "",
            block(report.after),
            "",
        ]
    )


class _ProgressBar:
    """tqdm over the training steps (loss smoothed, ETA), opened at the first step: a resumed run's bar starts
    where it resumed, and a run that stops before training shows none."""

    def __init__(self, total: int):
        self.total, self.bar, self.loss = total, None, 0.0

    def __call__(self, step: int, loss: float) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=max(self.total, step + 1), initial=step, desc="fine-tuning", unit="step")
            self.loss = loss
        self.loss = 0.9 * self.loss + 0.1 * loss
        self.bar.set_postfix(loss=f"{self.loss:.4f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sync.finetune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--project", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the fine-tuned detector's directory (resumed)")
    parser.add_argument("--holdout", type=float, default=0.2, help="share of annotated tasks kept out (default 0.2)")
    parser.add_argument("--steps", type=int, default=300, help="training steps in all, one image each (default 300)")
    parser.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default 1e-4)")
    parser.add_argument("--save-every", type=int, default=100, help="steps between saved states (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--url", help="Label Studio URL (default: $LABEL_STUDIO_URL)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0 <= args.holdout < 1 or args.steps < 1 or args.save_every < 1:
        _parser().error("--holdout goes from 0 to below 1; --steps and --save-every are at least 1")
    quiet_known_warnings()
    job = FinetuneJob(
        args.project, args.out, args.holdout, args.steps, args.lr, save_every=args.save_every, seed=args.seed
    )
    try:
        settings = BackendSettings.from_env()
        settings.configure_logging()
        bar = _ProgressBar(job.steps)
        with LabelStudioClient.from_settings(settings, args.url) as client, stop_on_ctrl_c(threading.Event()) as stop:
            try:
                report = finetune(client, settings.pipeline, job, settings.options(masks=False), on_step=bar, stop=stop)
            finally:
                bar.close()
    except GroundlabelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if report.interrupted:
        print(
            f"Interrupted at step {report.steps} of {job.steps}; the state is in {job.out / STATE_FILE}. Run the "
            "same command again to resume."
        )
        return 130
    print(report.text())
    print(f"\nSaved to {job.out} (model card: {job.out / CARD_FILE}); use it with GROUNDLABEL_DETECTOR={job.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
