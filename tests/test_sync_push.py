"""Pushing into a real Label Studio: what lands is what was meant (boxes on the object in the upright frame, masks
bit for bit), pushing twice does not duplicate, and a stopped server or a refused token never loses the work."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipeline import load_image
from sync import (
    LabelStudioClient,
    LabelStudioError,
    Outbox,
    ProjectConfig,
    Pusher,
    UnreachableError,
    box_to_pixels,
    rle_to_mask,
    to_label_studio,
)
from tests.labelstudio import GROUNDING_DINO_CONFIG, blob_masks, detections, exif_rotated_jpeg

CONFIG = ProjectConfig.parse(GROUNDING_DINO_CONFIG)  # the config of the ls_project fixture


def regions(image, boxes, labels, masks=None):
    """Label Studio regions for hand-made detections on ``image``."""
    return to_label_studio(detections(image.width, image.height, boxes, labels, masks=masks), CONFIG)


@pytest.fixture
def outbox(tmp_path) -> Outbox:
    return Outbox(tmp_path / "outbox")


@pytest.fixture
def rotated_task(label_studio, ls_project):
    """A task showing an EXIF-rotated JPEG, its upright image and the red square's upright box."""
    jpeg, red_box = exif_rotated_jpeg()
    (task,) = label_studio.upload_images(ls_project, {"rotated.jpg": jpeg})
    return task, load_image(jpeg), red_box


def test_annotation_lands_on_the_object_and_its_mask_decodes_identically(ls_client, outbox, rotated_task):
    task, image, red_box = rotated_task
    masks = blob_masks(image.width, image.height, [red_box])

    outcome = Pusher(ls_client, outbox).push(task, regions(image, [red_box], ["cats"], masks), kind="annotation")

    (stored,) = ls_client.annotations(task)
    assert (outcome.status, outcome.id) == ("created", stored["id"])
    box, brush = stored["result"]
    assert (box["original_width"], box["original_height"]) == (image.width, image.height) == (60, 80)
    # What Label Studio shows: the image it serves, upright, with the stored percent box over it.
    shown = load_image(ls_client.task_image(ls_client.task(task), CONFIG)).array.astype(int)
    x0, y0, x1, y1 = np.round(box_to_pixels(box)).astype(int)
    assert (x0, y0, x1, y1) == red_box
    assert (shown[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2, 0] > 200).all() and (
        shown[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2, 1] < 80
    ).all()
    np.testing.assert_array_equal(rle_to_mask(brush), masks[0])


@pytest.mark.parametrize("kind", ["prediction", "annotation"])
def test_pushing_the_same_result_twice_creates_it_once(ls_client, outbox, rotated_task, kind):
    task, image, red_box = rotated_task
    result = regions(image, [red_box, [1, 1, 9, 9]], ["cats", "house"])
    pusher = Pusher(ls_client, outbox)

    first, again = pusher.push(task, result, kind=kind), pusher.push(task, result, kind=kind)
    other = pusher.push(task, regions(image, [red_box], ["house"]), kind=kind)

    stored = ls_client.predictions(task) if kind == "prediction" else ls_client.annotations(task)
    assert (first.status, again.status, other.status) == ("created", "exists", "created")
    assert again.id == first.id and len(stored) == 2
    assert stored[0]["result"] == result.result
    if kind == "prediction":
        assert stored[0]["model_version"] == result.model_version and stored[0]["score"] == pytest.approx(result.score)


def test_outbox_keeps_work_while_the_server_is_down_and_delivers_it_after(
    label_studio, ls_client, outbox, rotated_task
):
    task, image, red_box = rotated_task
    result = regions(image, [red_box], ["cats"])
    waits: list[float] = []
    pusher = Pusher(ls_client, outbox, attempts=3, backoff=0.25, sleep=waits.append)

    with label_studio.stopped():
        with pytest.raises(UnreachableError, match=f"{label_studio.url} is unreachable"):
            ls_client.projects()
        queued = pusher.push(task, result, kind="annotation")
        queued_again = pusher.push(task, result, kind="annotation")
        (item,) = outbox.items()
        files = list(outbox.directory.iterdir())
        assert [f.suffix for f in files] == [".json"]
        assert label_studio.token not in files[0].read_text()
    # Back up: the next push that gets through also delivers what waited in the outbox.
    after_restart = pusher.push(task, regions(image, [[1, 1, 9, 9]], ["house"]), kind="annotation")

    assert (queued.status, queued_again.status) == ("queued", "queued") and "unreachable" in queued.error
    assert waits == [0.25, 0.5, 0.25, 0.5]  # backoff doubles between the 3 attempts of each push
    assert (item.task_id, item.kind, item.url) == (task, "annotation", label_studio.url)
    assert after_restart.status == "created" and pusher.pending == 0
    assert sorted(a["result"] == result.result for a in ls_client.annotations(task)) == [False, True]
    assert pusher.flush() == []


def test_refused_token_queues_the_work_for_a_client_with_a_good_token(label_studio, ls_client, outbox, rotated_task):
    task, image, red_box = rotated_task
    result = regions(image, [red_box], ["cats"])

    with LabelStudioClient(label_studio.url, "0" * 40) as wrong:
        refused = Pusher(wrong, outbox, sleep=lambda s: None).push(task, result)
    delivered = Pusher(ls_client, outbox).flush()

    assert refused.status == "queued" and "refused the token" in refused.error
    assert [o.status for o in delivered] == ["created"] and len(ls_client.predictions(task)) == 1


def test_queued_work_label_studio_rejects_for_good_is_parked_not_lost(label_studio, ls_client, outbox, rotated_task):
    task, image, red_box = rotated_task
    result = regions(image, [red_box], ["cats"])
    with LabelStudioClient(label_studio.url, "0" * 40) as wrong:
        Pusher(wrong, outbox, sleep=lambda s: None).push(10**9, result)  # queued: the token was refused

    (outcome,) = Pusher(ls_client, outbox).flush()

    assert outcome.status == "failed" and outcome.task_id == 10**9 and outbox.items() == []
    (parked,) = Outbox(outbox.directory / "failed").items()
    assert parked.payload == result.payload() and parked.error == outcome.error


def test_a_request_label_studio_rejects_is_raised_not_queued(ls_client, outbox, rotated_task):
    task, image, red_box = rotated_task
    result = regions(image, [red_box], ["cats"])

    with pytest.raises(LabelStudioError) as rejected:
        Pusher(ls_client, outbox).push(10**9, result)

    assert 400 <= rejected.value.status < 500 and outbox.items() == []


def test_a_prediction_pushed_with_replace_removes_our_earlier_ones_even_when_it_waited_in_the_outbox(
    label_studio, ls_client, outbox, rotated_task
):
    task, image, red_box = rotated_task
    pusher = Pusher(ls_client, outbox, attempts=1)
    first = replace(regions(image, [red_box], ["cats"]), model_version="groundlabel-gdino-tiny-box0.3-text0.25")
    pusher.push(task, first, kind="prediction")
    other_model = ls_client.create_prediction(task, first.result, score=0.3, model_version="yolo-v8")
    second = replace(regions(image, [[1, 1, 9, 9]], ["house"]), model_version="groundlabel-gdino-tiny-box0.5-text0.25")

    with label_studio.stopped():
        queued = pusher.push(task, second, kind="prediction", replace_older=True)
    assert queued.status == "queued" and len(ls_client.predictions(task)) == 2  # nothing removed before it lands
    delivered = pusher.flush()

    stored = ls_client.predictions(task)
    assert [outcome.status for outcome in delivered] == ["created"]
    assert sorted(p["result"] == second.result for p in stored if p["model_version"].startswith("groundlabel")) == [
        True
    ]
    assert other_model["id"] in {p["id"] for p in stored}
    third = replace(second, result=regions(image, [[2, 2, 12, 12]], ["cats"]).result)
    pusher.push(task, third, kind="prediction")  # without replace: ours pile up, as asked
    assert len(ls_client.predictions(task)) == 3
