"""A Label Studio project as a training set: ``python -m sync.export --project 3 --format coco --out dataset/``.

Each task's newest annotation (or, with ``--source predictions``, newest prediction; ``--source both``: the
annotation, else the prediction) becomes that image's objects (``sync.convert.from_label_studio``: brush and
polygon masks with their rectangles' boxes), written by supervision's dataset writers (``pipeline.export``).
Unlike Label Studio's own COCO and YOLO exporters, brush masks are kept. Classes are the labeling config's labels.
Tasks with nothing to export, or whose image cannot be fetched, are listed in the summary and left out.

A project's tasks can hold huge brush JSON (tens of MB per task): the export reads them one page of task ids and one
task's annotations at a time, with its own timeout (``--timeout``, default 120 s, never below GROUNDLABEL_TIMEOUT)
and retries of what may pass (timeouts, Label Studio down, 5xx), and shows a progress bar on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from pipeline import GroundlabelError, load_image
from pipeline.export import FORMATS, DatasetItem, export_dataset

from .client import LabelStudioClient, Task
from .convert import from_label_studio
from .errors import with_retries
from .settings import BackendSettings

log = logging.getLogger(__name__)
Source = Literal["annotations", "predictions", "both"]
EXPORT_TIMEOUT = 120.0  # seconds per request: one task's annotations can be tens of MB of brush JSON
PAGE_SIZE = 100  # task ids (and data) per page: small, whatever the tasks' annotations weigh


@dataclass
class ExportSummary:
    images: int = 0
    skipped: dict[int, str] = field(default_factory=dict)  # task id -> why it is not in the dataset

    def text(self) -> str:
        lines = [f"{self.images} images exported, {len(self.skipped)} tasks left out."]
        return "\n".join(lines + [f"  task {task}: {why}" for task, why in self.skipped.items()])


def export_project(
    client: LabelStudioClient,
    project: int,
    fmt: str,
    out: Path,
    source: Source = "annotations",
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    retry: Callable[[Callable], object] = with_retries,
) -> ExportSummary:
    """Write ``project``'s labeled tasks as a ``fmt`` dataset under ``out``; ``on_progress(tasks read, total)``
    after each task. Every Label Studio call goes through ``retry``."""
    config = retry(lambda: client.project(project)).config()
    summary = ExportSummary()

    def items() -> Iterator[DatasetItem]:
        pages = client.iter_pages(project, page_size=PAGE_SIZE, retry=retry)
        tasks = ((task, page.total) for page in pages for task in page.tasks)
        for done, (task, total) in enumerate(tasks, 1):
            regions = _regions(client, task, source, retry)
            on_progress(done, total)
            if regions is None:
                summary.skipped[task.id] = f"no {'annotation or prediction' if source == 'both' else source[:-1]}"
                continue
            try:
                image = load_image(client.task_image(task, config))
            except GroundlabelError as error:
                summary.skipped[task.id] = str(error)
                continue
            name = Path(str(task.data.get(config.image_key, ""))).name.split("?")[0] or f"task{task.id}.png"
            yield DatasetItem(f"{task.id}-{name}", image, from_label_studio(regions, image.width, image.height))

    summary.images = export_dataset(items(), config.labels, fmt, out)
    return summary


def _regions(client: LabelStudioClient, task: Task, source: Source, retry: Callable) -> list[dict] | None:
    """The newest usable annotation's regions (cancelled ones skipped) and/or prediction's, per ``source``."""
    if source in ("annotations", "both"):
        done = [a for a in retry(lambda: client.annotations(task.id)) if not a.get("was_cancelled")]
        if done:
            return max(done, key=lambda a: a.get("updated_at") or a.get("created_at") or "")["result"]
    if source in ("predictions", "both"):
        predictions = retry(lambda: client.predictions(task.id))
        if predictions:
            return max(predictions, key=lambda p: p.get("created_at") or "")["result"]
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sync.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--project", type=int, required=True)
    parser.add_argument("--format", choices=FORMATS, required=True)
    parser.add_argument("--out", type=Path, required=True, help="dataset directory")
    parser.add_argument("--source", choices=["annotations", "predictions", "both"], default="annotations")
    parser.add_argument("--url", help="Label Studio URL (default: $LABEL_STUDIO_URL)")
    parser.add_argument("--timeout", type=float, default=EXPORT_TIMEOUT, help="seconds per Label Studio request")
    args = parser.parse_args(argv)
    try:
        settings = BackendSettings.from_env()
        settings.configure_logging()
        settings = replace(settings, timeout=max(settings.timeout, args.timeout))
        with LabelStudioClient.from_settings(settings, args.url) as client, tqdm(unit="task", desc="exporting") as bar:

            def show(done: int, total: int) -> None:
                bar.total, bar.n = total, done
                bar.refresh()

            summary = export_project(client, args.project, args.format, args.out, args.source, show)
    except GroundlabelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary.text())
    print(f"{args.format} dataset: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
