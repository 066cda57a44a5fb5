"""A Label Studio project with brush annotations exported as a COCO dataset (``python -m sync.export``), read back
by supervision: the rectangles' boxes, the labels and the brush masks, which Label Studio's own COCO export drops."""

from __future__ import annotations

import numpy as np
import supervision as sv

from pipeline import load_image
from sync import Outbox, ProjectConfig, Pusher, to_label_studio
from sync.export import main
from tests.labelstudio import GROUNDING_DINO_CONFIG, blob_masks, detections, exif_rotated_jpeg, png

CONFIG = ProjectConfig.parse(GROUNDING_DINO_CONFIG)


def test_a_project_with_brush_annotations_exports_to_coco_with_its_masks(
    label_studio, ls_client, tmp_path, monkeypatch
):
    project = label_studio.create_project(title="export")
    jpeg, red_box = exif_rotated_jpeg()
    turned, plain, unlabeled, predicted = label_studio.upload_images(
        project,
        {"turned.jpg": jpeg, "plain.png": png(90, 70, seed=5), "unlabeled.png": png(40, 30), "guess.png": png(50, 40)},
    )
    pusher = Pusher(ls_client, Outbox(tmp_path / "outbox"))
    made = {}
    for task, image, boxes, labels in [
        (turned, load_image(jpeg), [red_box], ["cats"]),
        (plain, load_image(png(90, 70, seed=5)), [[5, 5, 45, 40], [50, 20, 88, 69]], ["house", "cats"]),
    ]:
        made[task] = detections(
            image.width, image.height, boxes, labels, masks=blob_masks(image.width, image.height, boxes)
        )
        pusher.push(task, to_label_studio(made[task], CONFIG), kind="annotation")
    pusher.push(predicted, to_label_studio(detections(50, 40, [[2, 2, 30, 30]], ["house"]), CONFIG))
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)

    assert main(["--project", str(project), "--format", "coco", "--out", str(tmp_path / "coco")]) == 0

    dataset = sv.DetectionDataset.from_coco(
        str(tmp_path / "coco" / "images"), str(tmp_path / "coco" / "annotations.json"), force_masks=True
    )
    assert dataset.classes == CONFIG.labels
    got = {path.split("/")[-1].split("-")[0]: (image, found) for path, image, found in dataset}
    assert sorted(got) == sorted(str(task) for task in made)  # the unlabeled and the predicted-only task left out
    for task, want in made.items():
        image, found = got[str(task)]
        assert image.shape[:2] == (want.height, want.width)  # upright
        order = np.argsort(found.xyxy[:, 0])
        mine = np.argsort(want.xyxy[:, 0])
        np.testing.assert_allclose(found.xyxy[order], want.xyxy[mine], atol=1.0)
        assert [dataset.classes[c] for c in found.class_id[order]] == [want.labels[i] for i in mine]
        for j, i in zip(order, mine):
            overlap = (found.mask[j] & want.masks[i]).sum() / (found.mask[j] | want.masks[i]).sum()
            assert overlap >= (0.98 if want.masks[i].sum() >= 1000 else 0.9), (task, overlap)

    # predictions too, when asked: the predicted-only task comes in with its box
    assert (
        main(["--project", str(project), "--format", "yolo", "--source", "both", "--out", str(tmp_path / "yolo")]) == 0
    )
    labels = sorted(p.name.split("-")[0] for p in (tmp_path / "yolo" / "labels").iterdir())
    assert labels == sorted(str(task) for task in [*made, predicted])
