"""The review without a browser: the box editor's edits turned into what will be pushed (``ui.review.Review.edit``:
deletions, relabels, drawn boxes, boxes dragged past the image, and which masks are decoded again), and the preview
(its size, colours, numbers, the chosen detection's highlight, masks hidden, which box a click selects)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipeline import DetectionResult, load_image
from ui.review import Review


@pytest.fixture
def review() -> Review:
    image = load_image(np.zeros((60, 80, 3), dtype=np.uint8))
    masks = np.zeros((2, 60, 80), dtype=bool)
    masks[0, 5:20, 5:30], masks[1, 30:50, 40:70] = True, True
    result = DetectionResult(
        80,
        60,
        xyxy=[[5.2, 5.1, 30.4, 20.3], [40, 30, 70, 50]],
        scores=[0.9, 0.6],
        phrases=["dog", "cat"],
        prompt_phrases=["dog", "cat"],
        labels=["dog", "cat"],
        masks=masks,
    )
    return Review.of(image, result)


def _box(x0, y0, x1, y1, label):
    return {"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1, "label": label}


def test_untouched_boxes_keep_everything_and_a_deleted_one_is_gone(review):
    calls = []
    edited = review.edit([_box(5, 5, 30, 20, "dog")], lambda boxes: calls.append(boxes) or None)
    assert calls == []  # nothing moved: no mask decoded
    assert len(edited.result) == 1 and edited.keep == [True] and edited.labels == ["dog"]
    np.testing.assert_allclose(edited.result.xyxy, [[5.2, 5.1, 30.4, 20.3]], atol=1e-5)  # the detector's corners
    assert edited.result.scores[0] == pytest.approx(0.9) and edited.result.phrases == ["dog"]
    np.testing.assert_array_equal(edited.result.masks[0], review.result.masks[0])


def test_a_relabeled_box_keeps_its_mask_and_a_moved_or_drawn_one_gets_a_new_one(review):
    decoded = []

    def masks_for(boxes):
        decoded.append(boxes.copy())
        return np.ones((len(boxes), 60, 80), dtype=bool)

    edited = review.edit(
        [_box(5, 5, 30, 20, "cat"), _box(44, 32, 74, 52, "cat"), _box(0, 0, 10, 10, "bird")], masks_for
    )
    assert edited.labels == ["cat", "cat", "bird"] and edited.result.phrases == ["dog", "cat", "bird"]
    np.testing.assert_allclose(edited.result.scores, [0.9, 0.6, 1.0])
    np.testing.assert_array_equal(decoded[0], [[44, 32, 74, 52], [0, 0, 10, 10]])  # only the moved and the drawn
    np.testing.assert_array_equal(edited.result.masks[0], review.result.masks[0])
    assert edited.result.masks[1:].all()


def test_a_box_dragged_past_the_edge_is_clipped_and_boxes_only_results_stay_without_masks(review):
    boxes_only = Review.of(review.image, replace(review.result, masks=None))
    edited = boxes_only.edit([_box(70, 50, 95, 75, "cat"), _box(20, 18, 2, 3, "dog")], None)
    np.testing.assert_allclose(edited.result.xyxy, [[70, 50, 80, 60], [2, 3, 20, 18]])
    assert edited.result.masks is None and edited.labels == ["cat", "dog"]


def test_a_large_photo_is_previewed_at_most_1600_pixels_wide_with_its_masks_in_place():
    image = load_image(np.zeros((2400, 3200, 3), dtype=np.uint8))
    masks = np.zeros((1, 2400, 3200), dtype=bool)
    masks[0, 200:1000, 400:1600] = True
    result = DetectionResult(
        3200,
        2400,
        xyxy=[[400, 200, 1600, 1000]],
        scores=[0.9],
        phrases=["dog"],
        prompt_phrases=["dog"],
        labels=["dog"],
        masks=masks,
    )
    review = Review.of(image, result)
    preview = np.asarray(review.preview())
    assert review.preview_scale == 0.5 and preview.shape == (1200, 1600, 3)
    assert preview[300, 500].any() and not preview[900, 1200].any()  # the mask's colour inside it, black outside


def test_the_preview_draws_each_label_in_the_projects_colour():
    masks = np.zeros((2, 240, 320), dtype=bool)
    masks[0, 40:200, 20:150], masks[1, 40:200, 170:300] = True, True
    result = DetectionResult(
        320,
        240,
        xyxy=[[20, 40, 150, 200], [170, 40, 300, 200]],
        scores=[0.9, 0.6],
        phrases=["dog", "cat"],
        prompt_phrases=["dog", "cat"],
        labels=["dog", "cat"],
        masks=masks,
    )
    review = Review.of(load_image(np.zeros((240, 320, 3), dtype=np.uint8)), result)
    shaded = np.asarray(review.preview({"dog": (255, 0, 0), "cat": (0, 0, 255)})).astype(int)
    at = review.preview_scale  # inside each mask, away from tags, on black: 45 % of the colour
    dog, cat = shaded[round(150 * at), round(80 * at)], shaded[round(150 * at), round(240 * at)]
    assert dog[0] > 100 and dog[1] < 30 and dog[2] < 30, dog
    assert cat[2] > 100 and cat[0] < 30 and cat[1] < 30, cat


def test_the_preview_numbers_each_box_as_its_row_in_the_list(review, monkeypatch):
    import importlib

    drawn = {}  # (pipeline.render is also the name of the function: the module by its full name)
    monkeypatch.setattr(
        importlib.import_module("pipeline.render"), "render", lambda image, result, **kw: drawn.update(kw) or image
    )
    review.keep[0] = False
    review.preview()
    assert drawn["numbers"] == [2]  # the second row, still #2 with the first dropped


def two_boxes_on_black() -> Review:
    """A 320x240 black image with dog (20, 40)-(150, 200) and cat (170, 40)-(300, 200), each with a mask."""
    masks = np.zeros((2, 240, 320), dtype=bool)
    masks[0, 40:200, 20:150], masks[1, 40:200, 170:300] = True, True
    result = DetectionResult(
        320,
        240,
        xyxy=[[20, 40, 150, 200], [170, 40, 300, 200]],
        scores=[0.9, 0.6],
        phrases=["dog", "cat"],
        prompt_phrases=["dog", "cat"],
        labels=["dog", "cat"],
        masks=masks,
    )
    return Review.of(load_image(np.zeros((240, 320, 3), dtype=np.uint8)), result)


def test_a_small_image_is_previewed_1024_pixels_wide_with_its_boxes_scaled_so_it_fills_the_screen():
    review = two_boxes_on_black()
    preview = np.asarray(review.preview())
    assert review.preview_scale == 3.2 and preview.shape == (768, 1024, 3)
    assert preview[round(120 * 3.2), round(85 * 3.2)].any()  # the dog's mask, where the image's pixel (85, 120) is
    assert not preview[round(120 * 3.2), round(160 * 3.2)].any()  # between the two boxes: black


def test_the_chosen_detection_is_highlighted_and_masks_can_be_hidden():
    review = two_boxes_on_black()
    plain, chosen = (np.asarray(review.preview(selected=row)).astype(int) for row in (None, 1))
    halo = chosen.min(axis=-1) > 200  # white: drawn only around the chosen box
    ys, xs = np.nonzero(halo & ~(plain.min(axis=-1) > 200))
    assert len(xs) > 0 and xs.min() >= 165 * 3.2 - 12 and xs.max() <= 305 * 3.2 + 12  # around the cat's box only
    inside_dog, inside_cat = (round(150 * 3.2), round(80 * 3.2)), (round(150 * 3.2), round(240 * 3.2))
    assert (chosen[inside_dog] == plain[inside_dog]).all()  # the other detection drawn as before
    hidden = np.asarray(review.preview(show_masks=False))
    assert not hidden[inside_dog].any() and not hidden[inside_cat].any()  # boxes only: the masks' insides black
    assert hidden[round(40 * 3.2), round(80 * 3.2)].any() or hidden[round(40 * 3.2) + 2, round(80 * 3.2)].any()
    assert review.kept().masks is not None  # what is pushed keeps its masks


def test_a_click_selects_the_smallest_kept_box_under_it():
    review = two_boxes_on_black()
    review.result = replace(review.result, xyxy=np.array([[20, 40, 150, 200], [60, 80, 100, 120]], np.float32))
    assert review.row_at(80, 100) == 1  # inside both: the smaller box
    assert review.row_at(30, 50) == 0 and review.row_at(310, 230) is None
    review.keep[1] = False
    assert review.row_at(80, 100) == 0  # a dropped detection is not selectable


def test_the_hover_data_holds_each_rows_box_as_fractions_of_the_image():
    import json
    import re

    from ui.detections import boxes_data

    held = json.loads(re.search(r"data-boxes='([^']*)'", boxes_data(two_boxes_on_black().result)).group(1))
    assert held == [[0.0625, 0.1667, 0.4688, 0.8333], [0.5312, 0.1667, 0.9375, 0.8333]]


def test_a_review_with_nothing_kept_previews_the_plain_image():
    review = two_boxes_on_black()
    review.keep = [False, False]
    assert not np.asarray(review.preview()).any()  # black, 1024 px wide, nothing drawn
