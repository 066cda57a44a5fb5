"""Datasets out: a folder of images and a prompt become a COCO, YOLO or Pascal VOC dataset in one command, and
supervision's own readers load back the same boxes, classes and masks. The shapes models
(pipeline/testing/weights) make clean masks, so mask round trips are measured on real shapes, not noise."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import supervision as sv
from PIL import Image

from pipeline import LabelMap, Options, load_image
from pipeline.__main__ import main
from pipeline.testing import shapes as S

PROMPT = "blue circle:ball. red square:box. green triangle:roof"
CLASSES = ["ball", "box", "roof"]


@pytest.fixture(scope="module")
def shapes_pipeline():
    return S.load_shapes_pipeline()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """A folder of shape scenes: PNGs of two sizes and a JPEG stored sideways with EXIF orientation 6."""
    folder = tmp_path_factory.mktemp("scenes")
    for i in range(5):
        image, _ = S.make_scene(np.random.default_rng(40 + i), size=(160, 160) if i % 2 else (192, 160), shapes=3)
        image.save(folder / f"scene{i}.png")
    image, _ = S.make_scene(np.random.default_rng(47), size=(192, 160), shapes=3)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(np.asarray(image), 1)).save(folder / "turned.jpg", quality=95, exif=exif)
    return folder


def export(scenes, out, fmt: str, masks: bool, monkeypatch) -> int:
    monkeypatch.setenv("GROUNDLABEL_INPUT_SIZE", str(S.SHAPES_INPUT_SIZE))
    args = [
        str(scenes),
        "--prompt",
        PROMPT,
        "--labels",
        ",".join(CLASSES),
        "--detector",
        str(S.shapes_detector_dir()),
        "--device",
        "cpu",
        "--box-threshold",
        str(S.SHAPES_BOX_THRESHOLD),
        "--text-threshold",
        str(S.SHAPES_TEXT_THRESHOLD),
        "--export",
        fmt,
        "--out",
        str(out),
    ]
    if masks:
        args += ["--masks", S.SHAPES_SEGMENTER, "--checkpoint", str(S.shapes_sam_checkpoint())]
    return main(args)


def direct(shapes_pipeline, path, masks: bool):
    """What the pipeline finds in ``path`` (upright), with labels, run without the CLI."""
    options = Options(S.SHAPES_BOX_THRESHOLD, S.SHAPES_TEXT_THRESHOLD, S.SHAPES_SEGMENTER if masks else None)
    result = shapes_pipeline(load_image(path), PROMPT, options, LabelMap(CLASSES))
    return result[[i for i, label in enumerate(result.labels) if label is not None]]


def read_back(fmt: str, out) -> sv.DetectionDataset:
    if fmt == "coco":
        return sv.DetectionDataset.from_coco(str(out / "images"), str(out / "annotations.json"), force_masks=True)
    if fmt == "yolo":
        return sv.DetectionDataset.from_yolo(
            str(out / "images"), str(out / "labels"), str(out / "data.yaml"), force_masks=True
        )
    return sv.DetectionDataset.from_pascal_voc(str(out / "images"), str(out / "annotations"), force_masks=True)


def by_name(dataset: sv.DetectionDataset) -> dict[str, tuple[np.ndarray, sv.Detections]]:
    return {path.split("/")[-1]: (image, detections) for path, image, detections in dataset}


def order(xyxy: np.ndarray) -> np.ndarray:
    return np.lexsort(np.round(xyxy).T[::-1])


@pytest.mark.parametrize("fmt,masks", [("coco", True), ("voc", True), ("yolo", False)])  # VOC: boxes only
def test_an_exported_dataset_reads_back_with_the_same_boxes_classes_and_masks(
    shapes_pipeline, scenes, tmp_path, monkeypatch, fmt, masks
):
    assert export(scenes, tmp_path, fmt, masks, monkeypatch) == 0

    dataset = read_back(fmt, tmp_path)
    # VOC keeps no class list: supervision lists the classes in the order the files first name them
    assert (sorted(dataset.classes) if fmt == "voc" else dataset.classes) == CLASSES
    images = by_name(dataset)
    assert sorted(images) == sorted(p.name for p in scenes.iterdir())
    found, ious = 0, []
    for path in sorted(scenes.iterdir()):
        want = direct(shapes_pipeline, path, masks)
        image, got = images[path.name]
        assert image.shape[:2] == (want.height, want.width)  # upright, also for the EXIF-turned JPEG
        assert len(got) == len(want), path.name
        mine, theirs = order(want.xyxy), order(got.xyxy)
        np.testing.assert_allclose(
            got.xyxy[theirs], np.clip(want.xyxy[mine], 0, [want.width, want.height] * 2), atol=1.0
        )
        assert [dataset.classes[c] for c in got.class_id[theirs]] == [want.labels[i] for i in mine]
        if masks and fmt == "coco":
            ious += [(int(want.masks[i].sum()), S.mask_iou(got.mask[j], want.masks[i])) for i, j in zip(mine, theirs)]
        found += len(want)
    assert found >= 6, "the scenes should hold several detections"
    assert all(iou >= (0.98 if area >= 1000 else 0.9) for area, iou in ious), ious
    if fmt == "coco":
        assert len(ious) == found
        written = json.loads((tmp_path / "annotations.json").read_text())["annotations"]
        polygons = [a for a in written if isinstance(a["segmentation"], list) and a["segmentation"]]
        assert polygons and all(a["iscrowd"] == 0 for a in polygons)


def test_yolo_segmentation_keeps_the_masks_as_polygons(shapes_pipeline, scenes, tmp_path, monkeypatch):
    assert export(scenes, tmp_path, "yolo", True, monkeypatch) == 0

    images = by_name(read_back("yolo", tmp_path))
    for path in sorted(scenes.iterdir()):
        want = direct(shapes_pipeline, path, True)
        got = images[path.name][1]
        for mask in [m for m in want.masks if m.any()]:  # each non-empty mask is one of the read-back polygons
            assert max(S.mask_iou(mask, other) for other in got.mask) >= 0.9


def test_a_copy_is_kept_byte_for_byte_when_the_image_needs_no_turning(scenes, tmp_path, monkeypatch):
    assert export(scenes, tmp_path, "coco", False, monkeypatch) == 0

    assert (tmp_path / "images" / "scene0.png").read_bytes() == (scenes / "scene0.png").read_bytes()
    turned = Image.open(io.BytesIO((tmp_path / "images" / "turned.jpg").read_bytes()))
    assert turned.size == (192, 160) and turned.getexif().get(0x0112, 1) == 1
