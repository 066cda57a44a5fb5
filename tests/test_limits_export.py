"""Datasets out of ragged masks, and never half a dataset: YOLO-seg of speckled masks like random-weight MobileSAM's
(supervision's hole seams fail on them) completes, and a failure part way leaves no dataset directory behind."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import supervision as sv
from supervision.dataset.utils import approximate_mask_with_polygons

from pipeline import GroundlabelError, Options, load_image
from pipeline.export import DatasetItem, export_dataset

PROMPT = "brown dog. possum on a fence"


def ragged(rng: np.random.Generator, box: tuple[int, int, int, int]) -> np.ndarray:
    """A speckled mask inside ``box``, like a random-weight MobileSAM's: many parts, holes in most of them."""
    x0, y0, x1, y1 = box
    mask = np.zeros((480, 640), bool)
    mask[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.6
    return mask


def test_yolo_segmentation_of_ragged_masks_completes(pipeline, photo, tmp_path):
    image, rng = load_image(photo), np.random.default_rng(0)
    boxes = [(10, 20, 200, 220), (300, 100, 630, 470)]
    masks = np.stack([ragged(rng, box) for box in boxes])
    with pytest.raises(ValueError, match="No foreground-contained seam"):  # what used to end the export
        approximate_mask_with_polygons(masks[0], bridge_holes=True)
    result = pipeline(image, PROMPT, Options(0.0, 0.0))[:2]
    result = replace(result, xyxy=np.array(boxes, np.float32), masks=masks).with_labels(["dog", "fence"])
    out = tmp_path / "yolo"
    assert export_dataset(iter([DatasetItem("photo.png", image, result)]), ["dog", "fence"], "yolo", out) == 1

    dataset = sv.DetectionDataset.from_yolo(
        str(out / "images"), str(out / "labels"), str(out / "data.yaml"), force_masks=True
    )
    (_, _, read), written = next(iter(dataset)), (out / "labels" / "photo.txt").read_text().splitlines()
    assert len(read) == len(written) > 2 and all(len(line.split()) >= 7 for line in written)  # polygons, not boxes
    for class_id, mask in enumerate(masks):  # each mask's parts, holes filled, cover it and stay in its box
        union = np.logical_or.reduce(read.mask[read.class_id == class_id])
        assert (union & mask).sum() / mask.sum() > 0.97 and not (union & ~masks.any(0) & ~_box(boxes[class_id])).any()


def _box(box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    inside = np.zeros((480, 640), bool)
    inside[max(0, y0 - 2) : y1 + 2, max(0, x0 - 2) : x1 + 2] = True
    return inside


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_a_failure_part_way_leaves_no_dataset(pipeline, photo, tmp_path, fmt):
    image = load_image(photo)
    result = pipeline(image, PROMPT, Options(0.0, 0.0))
    result = result.with_labels(["dog"] * len(result))

    def items():
        yield DatasetItem("a.png", image, result)
        raise OSError("disk full")

    out = tmp_path / "data" / fmt
    with pytest.raises(OSError, match="disk full"):
        export_dataset(items(), ["dog"], fmt, out)
    assert not out.exists() and list((tmp_path / "data").iterdir()) == []  # nor a staging directory

    assert export_dataset(iter([DatasetItem("a.png", image, result)]), ["dog"], fmt, out) == 1
    assert (out / "images" / "a.png").exists()
    with pytest.raises(GroundlabelError, match="already exists and is not an empty directory"):
        export_dataset(iter([DatasetItem("b.png", image, result)]), ["dog"], fmt, out)
    assert not (out / "images" / "b.png").exists()
