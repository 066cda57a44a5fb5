"""Running a query and showing its result: shared by the playground and the Label Studio review."""

from __future__ import annotations

import functools
import hashlib
import html
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from pipeline import DetectionResult, GroundlabelError, LabelMap, LoadedImage, Options
from pipeline.export import DatasetItem, export_dataset
from pipeline.families import reads_text_threshold

from .models import ModelHub, ProgressFn, on_gpu

logger = logging.getLogger(__name__)

TABLE_HEADERS = ["#", "label", "phrase", "score", "box (x0, y0, x1, y1)"]


@dataclass(frozen=True)
class Query:
    """An image, what to look for in it and the pipeline options (thresholds, segmenter, detector) to look with: a
    threshold move replaces ``options`` and re-applies it without re-running the detector."""

    image: LoadedImage
    name: str  # shown in messages and used for download file names
    prompt: str
    options: Options = field(default_factory=Options)
    label_map: LabelMap | None = None


@on_gpu
def run_query(hub: ModelHub, query: Query, progress: ProgressFn) -> tuple[DetectionResult, float]:
    """The pipeline's result and the seconds it took. Caches make a repeated image/prompt skip the detector."""
    start, options = time.perf_counter(), query.options
    pipeline = hub.load(options.segmenter, progress, detector=options.detector)
    progress(0.6, desc="Detecting and segmenting" if options.segmenter else "Detecting")
    result = pipeline(query.image, query.prompt, options, query.label_map)
    return result, time.perf_counter() - start


def said(hub: ModelHub, result: DetectionResult, query: Query, seconds: float) -> str:
    """``summary`` of a run of ``query``, naming its text threshold only when its detector has one."""
    options = query.options
    text = options.text_threshold if reads_text_threshold(options.detector or hub.lazy.settings.detector) else None
    return summary(result, query, seconds, options.box_threshold, text)


def table_rows(result: DetectionResult) -> list[list]:
    """One row per detection, numbered from 1 as in the rendered image's order."""
    return [
        [i + 1, label, phrase, round(float(score), 3), ", ".join(f"{v:.0f}" for v in box)]
        for i, (label, phrase, score, box) in enumerate(
            zip(result.display_labels(), result.phrases, result.scores, result.xyxy)
        )
    ]


# Characters of the prompt a run message repeats: a long prompt must not push the results off the screen.
PROMPT_SHOWN = 80


def threshold_text(value: float) -> str:
    """0.35 -> "0.35", 0.9995 -> "0.9995" (never rounded up to a threshold that was not set), 0.4 -> "0.40"."""
    text = f"{value:.4f}".rstrip("0")
    return text + "0" * max(0, 4 - len(text))


def summary(result: DetectionResult, query: Query, seconds: float, box: float, text: float | None) -> str:
    """ "3 detections for "dog" (box >= 0.35, text >= 0.25) in 40 ms", plus the prompt phrases no label matched and the result's notes;
    ``text`` None: the detector has no text threshold, so none is named."""
    count = f"{len(result)} detection{'s' if len(result) != 1 else ''}"
    prompt = query.prompt if len(query.prompt) <= PROMPT_SHOWN else query.prompt[: PROMPT_SHOWN - 1] + "…"
    thresholds = f"box ≥ {threshold_text(box)}" + (f", text ≥ {threshold_text(text)}" if text is not None else "")
    line = f"<strong>{count}</strong> for “{html.escape(prompt)}” ({thresholds}) in {seconds * 1000:.0f} ms"
    if result.unmapped:
        names = ", ".join(f"“{html.escape(p)}”" for p in result.unmapped)
        line += (
            f"<br>No project label for {names}: their boxes show as “phrase?”. "
            "Write <code>phrase:Label</code> in the prompt to choose one."
        )
    return "<br>".join([line, *map(html.escape, result.notes)])  # what was cut (e.g. masks past the cap)


def row_at(result: DetectionResult, x: float, y: float, among: list[int] | None = None) -> int | None:
    """The detection (of rows ``among``, by default all) whose box holds pixel (x, y): the smallest such box (a
    click on a small object inside a large one means the small one); None where no box is."""
    rows = range(len(result)) if among is None else among
    hits = [
        (float(np.prod(result.xyxy[i, 2:] - result.xyxy[i, :2])), i)
        for i in rows
        if result.xyxy[i, 0] <= x <= result.xyxy[i, 2] and result.xyxy[i, 1] <= y <= result.xyxy[i, 3]
    ]
    return min(hits)[1] if hits else None


def boxes_data(result: DetectionResult) -> str:
    """A hidden element holding each detection's box as fractions of the image (x0, y0, x1, y1), by row: the
    page's script outlines the box of the row under the pointer (theme.CANVAS_JS)."""
    size = np.array([result.width, result.height] * 2, dtype=np.float64)
    fractions = (result.xyxy / size).round(4).tolist() if len(result) else []
    return f"<span class='gl-boxes' hidden data-boxes='{json.dumps(fractions)}'></span>"


# A handler's answer: {component: new value} for the components it changes (never an empty dict: Gradio reads that as
# one missing value per output).
Updates = dict[Any, Any]
# A handler's inputs by component: Gradio passes a set of inputs as one dict, so a handler that needs the prompt and
# the options reads them in one place (the tab's ``asked``) instead of taking each control as a parameter.
Values = dict[Any, Any]


def guarded(report_to: str = "message") -> Callable:
    """A tab's handler whose failures become a readable message (in the tab's component named ``report_to``) and a
    fresh model status; the rest of the tab stays as it was."""

    def decorate(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def wrapped(tab, *args, **kwargs) -> Updates:
            try:
                return handler(tab, *args, **kwargs)
            except Exception as error:  # noqa: BLE001 - the UI boundary
                return {getattr(tab, report_to): failure(error), tab.model_status: tab.hub.status_markdown()}

        return wrapped

    return decorate


def notice(text: str, kind: str = "error") -> str:
    """A message box (kind: error, ok, info) with ``text`` escaped, so error texts cannot inject markup."""
    return f"<div class='gl-notice gl-{kind}'>{html.escape(text)}</div>"


def failure(error: Exception) -> str:
    """The message for a failed UI event: the error's own sentence, or a pointer to the log for a bug."""
    if isinstance(error, GroundlabelError):
        return notice(str(error))
    logger.exception("UI event failed", exc_info=error)
    return notice(f"Unexpected error ({type(error).__name__}): {error}. The server log has the details.")


def write_json(result: DetectionResult, query: Query) -> str:
    """The result as a JSON file for download; named after the image, stored by content so repeats reuse it."""
    payload = {
        "image": query.name,
        "prompt": query.prompt,
        "box_threshold": query.options.box_threshold,
        "text_threshold": query.options.text_threshold,
        "segmenter": query.options.segmenter,
        **detections_json(result),
    }
    data = json.dumps(payload, indent=2).encode()
    folder = Path(tempfile.gettempdir()) / "groundlabel-json" / hashlib.sha1(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{Path(query.name).stem or 'image'}-detections.json"
    path.write_bytes(data)
    return str(path)


def detections_json(result: DetectionResult) -> dict:
    """``result.to_dict()`` with each detection's mask as polygons ([[x, y], ...] per part) when there are masks."""
    data = result.to_dict()
    if result.masks is not None:
        for entry, mask in zip(data["detections"], result.masks):
            entry["mask_polygons"] = mask_polygons(mask)
    return data


def mask_polygons(mask: np.ndarray) -> list[list[list[int]]]:
    """The mask's outlines in pixels, one polygon per part (supervision's tracing)."""
    return [polygon.astype(int).tolist() for polygon in sv.mask_to_polygons(mask.astype(bool))] if mask.any() else []


def write_dataset_zip(items: list[DatasetItem], fmt: str) -> str:
    """Images and their labeled detections as a ``fmt`` dataset (COCO / YOLO / VOC, supervision's writers),
    zipped for download, named after the first image; classes are the labels in the order they first appear.
    Stored by content, so asking twice for the same dataset reuses the zip."""
    classes = list(dict.fromkeys(label for item in items for label in item.result.labels if label is not None))
    digest = hashlib.sha1(fmt.encode())
    for item in items:
        result = item.result
        digest.update(f"|{item.name}|{item.image.sha1}|{result.model_version}|".encode() + result.xyxy.tobytes())
        digest.update(b"" if result.masks is None else np.packbits(result.masks).tobytes())
    folder = Path(tempfile.gettempdir()) / "groundlabel-datasets" / digest.hexdigest()[:16]
    name = f"{Path(items[0].name).stem or 'image'}-{fmt}"
    archive = folder / f"{name}.zip"
    if not archive.exists():
        dataset = folder / name
        shutil.rmtree(dataset, ignore_errors=True)
        export_dataset(items, classes or ["object"], fmt, dataset)
        shutil.make_archive(str(folder / name), "zip", dataset)
    return str(archive)
