"""Results out as a dataset other tools train on: COCO, YOLO or Pascal VOC, written by supervision's dataset
writers (``DetectionDataset.as_coco / as_yolo / as_pascal_voc``), never by hand.

Images go into the dataset upright (EXIF rotation applied), the frame every box and mask is in: an image that
needs no turning is copied byte for byte, a turned one is saved upright. Masks go where the format holds them:
COCO ``segmentation`` as polygons with ``iscrowd=0`` (as RLE with ``iscrowd=1`` when a mask has holes or several
parts, supervision's rule, so no pixel is lost), YOLO segmentation lines (polygons: the YOLO-seg format, whose
boxes are the masks' extents): one line per connected part, its outer outline with any holes filled. A YOLO-seg
line is one polygon that trainers fill; supervision can keep a hole only by a seam through the mask to its
outline, and finds none on ragged masks (``No foreground-contained seam found``), so holes are not written.
Pascal VOC gets boxes and classes only (its masks are class PNGs). Detections without a label (phrases that name
none of the classes) are left out.

A dataset is written to a temporary directory beside ``out`` and moved into place when complete: a failure part
way (an unreadable image, a full disk, Ctrl-C) leaves no half dataset.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import supervision as sv
from PIL import Image
from scipy.ndimage import binary_fill_holes

from .errors import GroundlabelError
from .images import LoadedImage
from .results import DetectionResult

FORMATS = ("coco", "yolo", "voc")
# Where each format's files go inside the output directory.
LAYOUT = {
    "coco": {"images": "images", "annotations": "annotations.json"},
    "yolo": {"images": "images", "annotations": "labels", "data_yaml": "data.yaml"},
    "voc": {"images": "images", "annotations": "annotations"},
}


@dataclass(frozen=True)
class DatasetItem:
    """One image of the dataset: a file name for it, the image (upright) and its detections; ``source``, when the
    image came from a file that needs no turning, is copied as it is instead of re-encoding the pixels."""

    name: str
    image: LoadedImage
    result: DetectionResult
    source: Path | None = None


def export_dataset(items: Iterable[DatasetItem], classes: list[str], fmt: str, out: Path) -> int:
    """Write ``items`` as a ``fmt`` dataset under ``out`` (layout in ``LAYOUT``); returns how many images it holds.
    Class ids follow the order of ``classes``; file names are made unique. Each image is written as it comes (an
    iterator of items keeps one image in memory); the detections, masks included, are held until the end."""
    if fmt not in FORMATS:
        raise GroundlabelError(f"Unknown dataset format {fmt!r}: use one of {', '.join(FORMATS)}.")
    if not classes:
        raise GroundlabelError("A dataset needs at least one class: give the labels (e.g. --labels dog,cat).")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GroundlabelError(f"{out} already exists and is not an empty directory: choose a new one for the dataset.")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        count = _write_dataset(items, classes, fmt, staging)
        os.replace(staging, out)  # an empty ``out`` is replaced as a whole
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return count


def _write_dataset(items: Iterable[DatasetItem], classes: list[str], fmt: str, out: Path) -> int:
    """``export_dataset``'s work, into ``out`` (the staging directory); the file paths inside are relative to it."""
    layout = {key: out / path for key, path in LAYOUT[fmt].items()}
    layout["images"].mkdir(parents=True, exist_ok=True)
    images, annotations, used = [], {}, set()
    for item in items:
        path = layout["images"] / _unique(item.name, used)
        _write_image(item, path)
        images.append(str(path))
        annotations[str(path)] = _detections(item.result, classes, fmt)
    dataset = sv.DetectionDataset(classes=list(classes), images=images, annotations=annotations)
    if fmt == "coco":
        dataset.as_coco(annotations_path=str(layout["annotations"]))
    elif fmt == "yolo":
        dataset.as_yolo(annotations_directory_path=str(layout["annotations"]), data_yaml_path=str(layout["data_yaml"]))
    else:
        dataset.as_pascal_voc(annotations_directory_path=str(layout["annotations"]))
    return len(images)


def _detections(result: DetectionResult, classes: list[str], fmt: str) -> sv.Detections:
    keep = [i for i, label in enumerate(result.labels) if label in classes]
    kept = result[keep]
    if not len(kept):
        return sv.Detections.empty()
    xyxy = np.clip(kept.xyxy.astype(np.float64), 0, [result.width, result.height] * 2)
    data = {"class_name": np.array(kept.labels, dtype=object)}
    masks = kept.masks if fmt != "voc" else None  # VOC's masks are class PNGs, not written by supervision
    if masks is not None and fmt == "yolo":  # one filled polygon per part: see the module's docstring
        masks = np.stack([binary_fill_holes(mask) for mask in masks])
    return sv.Detections(
        xyxy=xyxy,
        mask=masks,
        confidence=kept.scores.astype(np.float64),
        class_id=np.array([classes.index(label) for label in kept.labels], dtype=int),
        data=data,
    )


def _write_image(item: DatasetItem, path: Path) -> None:
    if item.source is not None:
        with Image.open(item.source) as original:
            upright_already = (
                original.size == (item.image.width, item.image.height) and original.getexif().get(0x0112, 1) == 1
            )
        if upright_already:
            shutil.copyfile(item.source, path)
            return
    if path.suffix.lower() in (".jpg", ".jpeg"):
        item.image.pil.save(path, quality=95)
    else:
        item.image.pil.save(path)


def _unique(name: str, used: set[str]) -> str:
    """``name`` (a plain file name with an image suffix), or ``stem-2.ext``... when taken."""
    path = Path(Path(name).name or "image.png")
    if path.suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"):
        path = path.with_name(path.name + ".png")
    candidate, n = path.name, 1
    while candidate.lower() in used:
        n += 1
        candidate = f"{path.stem}-{n}{path.suffix}"
    used.add(candidate.lower())
    return candidate
