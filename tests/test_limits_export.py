"""Datasets out of ragged masks, and never half a dataset: YOLO-seg of speckled masks like random-weight MobileSAM's
(supervision's hole seams fail on them) completes, and a failure part way leaves no dataset directory behind.
``python -m sync.export`` reads a project of huge brush JSON page by page, retrying answers lost on the way."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import supervision as sv
from label_studio_sdk.converter.brush import mask2rle
from supervision.dataset.utils import approximate_mask_with_polygons

from pipeline import GroundlabelError, Options, load_image
from pipeline.export import DatasetItem, export_dataset
from sync import LabelStudioClient
from sync.errors import with_retries
from sync.export import export_project
from tests.hostile import blank_png, cutting_proxy

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


# --- python -m sync.export on a project of huge brush JSON (issue 25) ---------------------------------------------

W, H = 1000, 750


def brush(mask: np.ndarray, i: int) -> dict:
    value = {"format": "rle", "rle": mask2rle(mask.astype(np.uint8) * 255), "brushlabels": ["cats"]}
    return {
        "id": f"m{i}",
        "from_name": "label2",
        "to_name": "image",
        "type": "brushlabels",
        "original_width": W,
        "original_height": H,
        "value": value,
    }


def discs(count: int, speckle: float, rng: np.random.Generator) -> list[dict]:
    """``count`` brush discs; ``speckle`` of their pixels off at random (random-weight masks: big RLE)."""
    yy, xx = np.ogrid[:H, :W]
    return [
        brush(((xx - 100 - 80 * i) ** 2 + (yy - 370) ** 2 < 250**2) & (rng.random((H, W)) >= speckle), i)
        for i in range(count)
    ]


def project_of_tasks(
    label_studio, count: int, predictions: list[dict], annotation: list[dict]
) -> tuple[int, list[int]]:
    project = label_studio.create_project(title="big export")
    tasks = label_studio.upload_images(project, {f"t{i}.png": blank_png(W, H) for i in range(count)})
    for start in range(0, count, 2):
        body = [
            {"task": t, "result": predictions, "model_version": "old", "score": 0.5} for t in tasks[start : start + 2]
        ]
        label_studio.api("POST", f"/api/projects/{project}/import/predictions", json=body)
    for task in tasks:
        label_studio.api("POST", f"/api/tasks/{task}/annotations/", json={"result": annotation})
    return project, tasks


def test_an_export_survives_label_studio_answers_lost_on_the_way(label_studio, tmp_path):
    rng = np.random.default_rng(1)
    project, tasks = project_of_tasks(label_studio, 3, discs(1, 0.0, rng), discs(2, 0.0, rng))
    with cutting_proxy(label_studio.port) as proxy, LabelStudioClient(proxy.url, label_studio.token) as client:
        proxy.cut(b"GET /api/tasks?")  # the first page of tasks
        proxy.cut(f"GET /api/tasks/{tasks[1]}/annotations/".encode())
        seen = []
        summary = export_project(
            client,
            project,
            "coco",
            tmp_path / "coco",
            on_progress=lambda done, total: seen.append((done, total)),
            retry=functools.partial(with_retries, backoff=0.0),
        )
    assert proxy.cuts == 2 and summary.images == 3 and not summary.skipped
    assert seen == [(1, 3), (2, 3), (3, 3)]
    coco = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert len(coco["images"]) == 3 and len(coco["annotations"]) == 6


@pytest.mark.slow
def test_a_project_whose_export_is_over_100_mb_exports_with_progress(label_studio, tmp_path):
    rng = np.random.default_rng(2)
    predictions, annotation = discs(12, 0.1, rng), discs(6, 0.0, rng)  # ~5 MB of brush JSON per task
    count = 30
    size = count * (len(json.dumps(predictions)) + len(json.dumps(annotation)))
    assert size > 100e6
    project, _ = project_of_tasks(label_studio, count, predictions, annotation)
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token}
    started = time.monotonic()
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        export = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sync.export",
                "--project",
                str(project),
                "--format",
                "coco",
                "--out",
                str(tmp_path / "c"),
            ],
            env=env,
            stdout=out,
            stderr=err,
        )
        _, status, usage = os.wait4(export.pid, 0)  # the export's own peak RSS
    elapsed, peak = time.monotonic() - started, usage.ru_maxrss
    out, err = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert os.waitstatus_to_exitcode(status) == 0, err[-2000:]
    assert f"{count} images exported, 0 tasks left out." in out
    assert "exporting" in err and f"{count}/{count}" in err  # the progress bar
    coco = json.loads((tmp_path / "c" / "annotations.json").read_text())
    assert len(coco["images"]) == count and len(coco["annotations"]) == count * len(annotation)
    print(f"export of a {size / 1e6:.0f} MB project ({count} tasks): {elapsed:.1f} s, peak RSS {peak / 1024:.0f} MB")
