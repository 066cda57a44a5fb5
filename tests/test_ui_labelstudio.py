"""The Label Studio tab as a reviewer drives it in chromium, against a real Label Studio server."""

from __future__ import annotations

import logging
import re
from collections import Counter

import numpy as np
import pytest
from playwright.sync_api import expect

from pipeline import DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD, Options, load_image
from sync import Outbox, ProjectConfig, to_label_studio
from tests.browser import picture_box, smooth_png
from tests.counting import count_calls
from tests.labelstudio import GROUNDING_DINO_CONFIG, detections, predictions_per_task
from ui import testing as ui_testing
from ui.testing import connect, open_task

pytest_plugins = ["tests.browser"]
CONFIG = ProjectConfig.parse(GROUNDING_DINO_CONFIG)


@pytest.fixture
def project(label_studio, request):
    """A Grounding DINO project (boxes + brush masks, labels cats/house) with two uploaded images."""
    images = {"first.png": smooth_png(21), "second.png": smooth_png(22)}
    project_id = label_studio.create_project(title=f"ui {request.node.name}"[:50])
    return project_id, dict(zip(label_studio.upload_images(project_id, images), images.values()))


def expected_result(pipeline, image: bytes):
    """What the UI should find in a task: the config's default prompt, default thresholds, the tiny SAM."""
    return pipeline(
        load_image(image),
        CONFIG.default_prompt,
        Options(DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD, "sam_tiny_test"),
        CONFIG.label_map(),
    )


def choose_project(page, label_studio, project_id: int, tasks: int = 2) -> None:
    ui_testing.choose_project(page, label_studio.url, label_studio.token, project_id)
    expect(page.locator("#ls-pager")).to_contain_text(f"{tasks} tasks")


def review_first_task(page, label_studio, project, pipeline, at_least: int) -> tuple:
    """Open the project's first task: (its id, its image, what the tab should find there: at least ``at_least``)."""
    project_id, images = project
    (first, image), *_ = images.items()
    shown = expected_result(pipeline, image)
    assert len(shown) >= at_least
    choose_project(page, label_studio, project_id)
    open_task(page, first)
    return first, image, shown


def test_reviewed_push_creates_annotation_with_exactly_the_kept_regions(page, label_studio, project, pipeline):
    project_id, images = project
    (first, image), (second, _) = images.items()
    expected = expected_result(pipeline, image)
    assert len(expected) >= 2 and None not in expected.labels, "pick another seed: the test needs 2 labeled boxes"
    choose_project(page, label_studio, project_id)
    open_task(page, first)
    expect(page.locator("#ls-review .gl-review-row")).to_have_count(len(expected))

    page.get_by_role("checkbox", name="Keep #1", exact=True).uncheck()  # the names a screen reader announces
    other = next(label for label in CONFIG.labels if label != expected.labels[1])
    page.get_by_role("combobox", name="Label of #2", exact=True).click()
    page.get_by_role("option", name=other, exact=True).click()
    kept = expected[1:].with_labels([other, *expected.labels[2:]])
    counts = ", ".join(f"{label} ×{n}" for label, n in Counter(kept.labels).items())
    expect(page.locator("#ls-kept")).to_contain_text(f"{len(kept)} of {len(expected)} kept ({counts})")
    page.locator("#ls-kind").get_by_label("annotation").check()
    page.locator("#ls-push").click()

    expect(page.locator("#ls-message")).to_contain_text("Pushed annotation")
    annotations = label_studio.api("GET", f"/api/tasks/{first}/annotations/")
    assert len(annotations) == 1
    stored = annotations[0]["result"]
    assert sorted(region["id"] for region in stored) == sorted(to_label_studio(kept, CONFIG).region_ids)
    rectangles = [region for region in stored if region["type"] == "rectanglelabels"]
    assert Counter(region["value"]["rectanglelabels"][0] for region in rectangles) == Counter(kept.labels)
    expect(page.locator("#ls-task")).to_contain_text(f"Task #{second}")
    expect(page.locator("#ls-project input")).to_have_value(re.compile(r"1/2 labeled"))  # counts follow pushes
    expect(page.locator("#ls-message").get_by_role("link")).to_have_attribute(
        "href", f"{label_studio.url}/projects/{project_id}/data?task={first}"
    )


def test_wrong_token_shows_readable_error_and_never_the_token(page, label_studio, caplog):
    wrong = "f" * 40
    with caplog.at_level(logging.DEBUG):
        connect(page, label_studio.url, wrong)
        expect(page.locator("#ls-connection")).to_contain_text("Label Studio refused the token (401)")
    assert wrong not in page.content()
    assert wrong not in caplog.text


def test_push_while_label_studio_is_down_waits_in_outbox_then_arrives(
    page, label_studio, project, pipeline, app_settings
):
    project_id, images = project
    first, image = next(iter(images.items()))
    choose_project(page, label_studio, project_id)
    open_task(page, first)
    outbox = Outbox(app_settings.outbox_dir)
    waiting = len(outbox.items(label_studio.url))

    with label_studio.stopped():
        page.locator("#ls-push").click()
        expect(page.locator("#ls-message")).to_contain_text("kept in the outbox")
        assert len(outbox.items(label_studio.url)) == waiting + 1

    page.locator("#ls-retry").click()
    expect(page.locator("#ls-message")).to_contain_text("delivered, 0 still waiting")
    annotations = label_studio.api("GET", f"/api/tasks/{first}/annotations/")
    expected = to_label_studio(expected_result(pipeline, image), CONFIG)
    assert [sorted(region["id"] for region in a["result"]) for a in annotations] == [sorted(expected.region_ids)]


def test_the_quality_button_shows_what_labelers_kept_and_dropped_per_label(page, label_studio, project):
    project_id, images = project
    kept_task, dropped_task = images
    choose_project(page, label_studio, project_id)
    page.locator("#ls-quality").click()
    expect(page.locator("#ls-message")).to_contain_text(f"Project {project_id} holds no predictions")

    boxes = [[5, 5, 30, 30], [40, 40, 70, 70], [5, 40, 30, 70]]
    suggested = to_label_studio(detections(100, 100, boxes, ["cats", "cats", "house"]), CONFIG).result
    for task in images:
        label_studio.api(
            "POST",
            "/api/predictions",
            json={"task": task, "result": suggested, "model_version": "groundlabel-x-box0.3"},
        )
    label_studio.api("POST", f"/api/tasks/{kept_task}/annotations/", json={"result": suggested})
    label_studio.api("POST", f"/api/tasks/{dropped_task}/annotations/", json={"result": suggested[:1]})
    page.locator("#ls-quality").click()

    expect(page.locator("#ls-message")).to_contain_text("groundlabel-x-box0.3: 2 annotated tasks")
    table = page.locator("#ls-quality-table")
    # kept, moved, relabelled, dropped, missed, precision, recall (cats: 3 of 4 kept; house: 1 of 2)
    expect(table).to_contain_text(re.compile(r"cats\s+3\s+0\s+0\s+1\s+0\s+0\.750\s+1\.000"))
    expect(table).to_contain_text(re.compile(r"house\s+1\s+0\s+0\s+1\s+0\s+0\.500\s+1\.000"))


def test_prelabel_button_predicts_every_task_once(page, label_studio, project, pipeline):
    project_id, images = project
    choose_project(page, label_studio, project_id)
    page.locator("#ls-prelabel").click()
    expect(page.locator("#ls-message")).to_contain_text(f"Finished: {len(images)} pre-annotated, 0 skipped")
    for task_id, image in images.items():
        predictions = label_studio.api("GET", "/api/predictions", params={"task": task_id})
        expected = to_label_studio(expected_result(pipeline, image), CONFIG)
        assert [sorted(region["id"] for region in p["result"]) for p in predictions] == [sorted(expected.region_ids)]
    page.locator("#ls-prelabel").click()
    expect(page.locator("#ls-message")).to_contain_text(f"Finished: 0 pre-annotated, {len(images)} skipped")

    # another prompt is another model version: with "Replace our earlier predictions" it replaces, never piles up
    page.locator("#ls-prompt textarea").fill("cats")
    page.locator("#ls-replace input").check()
    page.locator("#ls-prelabel").click()
    expect(page.locator("#ls-message")).to_contain_text(f"Finished: {len(images)} pre-annotated, 0 skipped")
    version = CONFIG.version(
        pipeline.model_version(
            Options(DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD, "sam_tiny_test"), pipeline.check_prompt("cats")
        )
    )
    for task_id in images:
        predictions = label_studio.api("GET", "/api/predictions", params={"task": task_id})
        assert [p["model_version"] for p in predictions] == [version]


def test_detect_answers_while_a_pre_annotation_runs_and_cancel_stops_the_run(page, label_studio, pipeline):
    project_id = label_studio.create_project(title="ui prelabel cancel")
    tasks = label_studio.upload_images(project_id, {f"t{i}.png": smooth_png(60 + i) for i in range(6)})
    choose_project(page, label_studio, project_id, tasks=6)

    with count_calls(pipeline.detector.model, delay=1.0):  # every detector forward takes 1 s more
        page.locator("#ls-prelabel").click()
        expect(page.locator("#ls-message")).to_contain_text("Pre-annotating")  # its one progress display
        open_task(page, tasks[-1])  # Detect on another task is answered in the middle of the run
        page.locator("#ls-prelabel-cancel").click()
        expect(page.locator("#ls-message")).to_contain_text("Interrupted: ")

    done = int(re.search(r"Interrupted: (\d+) pre-annotated", page.locator("#ls-message").inner_text()).group(1))
    stored = predictions_per_task(label_studio, project_id)
    assert 0 < done < len(tasks) and sum(stored.values()) == done and set(stored.values()) == {1}


def test_on_a_phone_the_review_rows_come_before_the_push_button(page, label_studio, project):
    project_id, images = project
    page.set_viewport_size({"width": 390, "height": 844})
    choose_project(page, label_studio, project_id)
    open_task(page, next(iter(images)))

    first_row = page.locator("#ls-review .gl-review-row").first.bounding_box()
    push = page.locator("#ls-push").bounding_box()
    assert first_row["y"] + first_row["height"] <= push["y"] and push["x"] + push["width"] <= 390


def test_environment_token_goes_only_to_the_environment_url():
    from sync import BackendSettings
    from ui.labelstudio import env_token_for

    env = BackendSettings(label_studio_url="http://ls.internal:8080", label_studio_token="secret-token")
    assert env_token_for("http://ls.internal:8080/", env) == "secret-token"
    assert env_token_for("http://attacker.example:8080", env) == ""
    assert env_token_for("http://ls.internal:8080", BackendSettings()) == ""


def test_controls_used_before_connecting_answer_with_a_hint_and_no_error_badge(page):
    page.get_by_role("tab", name="Label Studio").click()
    hints = [
        ("#ls-next-page", "Connect and pick a project first"),
        ("#ls-prev-page", "Connect and pick a project"),
        ("#ls-unlabeled input", "Pick a project first"),
        ("#ls-push", "Open a task and detect first"),
        ("#ls-detect", "Open a task first"),
    ]
    for control, hint in hints:
        page.locator(control).click()
        expect(page.locator("#ls-message")).to_contain_text(hint)
    page.get_by_text("Output and thresholds").click()
    page.locator("#ls-mode").get_by_label("Boxes + masks").check()
    page.wait_for_timeout(500)
    assert page.locator(".error, .toast-body.error").count() == 0  # Gradio's red "Error" badge and toast


def test_a_detector_chosen_before_connecting_detects_the_tasks_and_can_be_switched_back(
    page, label_studio, project, pipeline, tmp_path, monkeypatch
):
    from dataclasses import replace

    from pipeline.testing.detectors import save_owlv2

    owl = save_owlv2(tmp_path / "owlv2")
    monkeypatch.setattr(
        pipeline,
        "settings",
        replace(pipeline.settings, checkpoints={**pipeline.settings.checkpoints, "owlv2-base": str(owl)}),
    )
    project_id, images = project
    page.get_by_role("tab", name="Label Studio").click()
    page.get_by_text("Output and thresholds").click()
    page.get_by_role("combobox", name="Detector", exact=True).click()
    page.get_by_role("option", name="owlv2-base", exact=True).click()  # before connecting: kept for later
    expect(page.locator("#ls-text")).to_be_hidden()
    choose_project(page, label_studio, project_id)
    task_id, image = next(iter(images.items()))
    open_task(page, task_id)
    owl_result = pipeline(
        load_image(image),
        CONFIG.default_prompt,
        Options(DEFAULT_BOX_THRESHOLD, 0.0, "sam_tiny_test", "owlv2-base"),
        CONFIG.label_map(),
    )
    assert len(owl_result) != len(expected_result(pipeline, image))
    expect(page.locator("#ls-summary")).to_contain_text(f"{len(owl_result)} detection")
    expect(page.locator("#ls-summary")).not_to_contain_text("text ≥")
    page.get_by_role("combobox", name="Detector", exact=True).click()
    page.get_by_role("option", name="(this app's)").click()
    expect(page.locator("#ls-text")).to_be_visible()
    expect(page.locator("#ls-summary")).to_contain_text(f"{len(expected_result(pipeline, image))} detection")
    expect(page.locator("#ls-summary")).to_contain_text("text ≥")


def _canvas_point(canvas_box: dict, size: tuple[int, int], x: float, y: float) -> tuple[float, float]:
    """Page coordinates of image pixel (x, y) in the box editor, which fits the image into its canvas, centred."""
    scale = min(canvas_box["width"] / size[0], canvas_box["height"] / size[1])
    return (
        float(canvas_box["x"] + (canvas_box["width"] - size[0] * scale) / 2 + x * scale),
        float(canvas_box["y"] + (canvas_box["height"] - size[1] * scale) / 2 + y * scale),
    )


def _free_spot(boxes: np.ndarray, size: tuple[int, int], side: int) -> tuple[int, int]:
    """The top-left corner of a ``side``-pixel square that touches none of ``boxes``."""
    for y in range(4, size[1] - side - 4, 4):
        for x in range(4, size[0] - side - 4, 4):
            if all(x + side < x0 or x > x1 or y + side < y0 or y > y1 for x0, y0, x1, y1 in boxes):
                return x, y
    raise AssertionError("no free spot: pick another seed")


def test_edited_boxes_are_pushed_as_shown_and_moved_or_drawn_ones_get_new_masks(page, label_studio, project, pipeline):
    from pipeline import MaskPrompt
    from sync import box_to_pixels, rle_to_mask

    project_id, images = project
    (first, image), _ = images.items()
    everything = expected_result(pipeline, image)
    assert len(everything) >= 3 and None not in everything.labels[:2]
    shown = everything[:2]
    choose_project(page, label_studio, project_id)
    open_task(page, first)
    for number in range(3, len(everything) + 1):  # keep the first two: the editor shows the kept boxes
        page.get_by_role("checkbox", name=f"Keep #{number}", exact=True).uncheck()
    expect(page.locator("#ls-kept")).to_contain_text(f"2 of {len(everything)} kept")
    page.get_by_role("tab", name="Edit boxes").click()
    canvas = page.locator("#ls-editor canvas")
    expect(canvas).to_be_visible()
    frame, size = canvas.bounding_box(), (320, 240)
    (x0, y0, x1, y1), other = shown.xyxy[0], shown.xyxy[1]
    inside = [
        (x, y)
        for x in np.linspace(x0 + 3, x1 - 3, 12)
        for y in np.linspace(y0 + 3, y1 - 3, 12)
        if not (other[0] <= x <= other[2] and other[1] <= y <= other[3])
    ]  # box 1, not box 2
    grab = min(inside, key=lambda p: np.hypot(p[0] - (x0 + x1) / 2, p[1] - (y0 + y1) / 2), default=None)  # no handle
    assert grab is not None, "box 1 lies inside box 2: pick another seed"
    start = _canvas_point(frame, size, *grab)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*_canvas_point(frame, size, grab[0] + 12, grab[1] + 9), steps=6)
    page.mouse.up()
    moved = np.array([x0 + 12, y0 + 9, x1 + 12, y1 + 9]).clip(0, [320, 240, 320, 240])
    left, top = _free_spot(np.stack([moved, other]), size, 40)
    page.keyboard.press("c")  # the editor's "Create box" mode
    page.mouse.move(*_canvas_point(frame, size, left, top))
    page.mouse.down()
    page.mouse.move(*_canvas_point(frame, size, left + 40, top + 40), steps=6)
    page.mouse.up()
    page.locator("#ls-apply-edits").click()
    expect(page.locator("#ls-message")).to_contain_text("3 boxes will be pushed, as edited")
    page.get_by_role("tab", name="What will be pushed").click()
    page.locator("#ls-kind").get_by_label("annotation").check()
    page.locator("#ls-push").click()

    expect(page.locator("#ls-message")).to_contain_text("Pushed annotation")
    stored = label_studio.api("GET", f"/api/tasks/{first}/annotations/")[0]["result"]
    rectangles = [r for r in stored if r["type"] == "rectanglelabels"]
    brushes = [r for r in stored if r["type"] == "brushlabels"]
    assert len(rectangles) == len(brushes) == 3
    drawn = np.array([left, top, left + 40, top + 40])
    pixels = [box_to_pixels(r) for r in rectangles]
    for want, label in [(moved, shown.labels[0]), (shown.xyxy[1], shown.labels[1]), (drawn, CONFIG.labels[0])]:
        found = [r for r, box in zip(rectangles, pixels) if np.abs(box - want).max() <= 1.5]
        assert found and found[0]["value"]["rectanglelabels"] == [label], (want, pixels)
    segmenter = pipeline.segmenters.get("sam_tiny_test")
    masks = [rle_to_mask(r) for r in brushes]
    for box in (moved, drawn):  # new masks for the moved and the drawn box (the boxes the editor returned)
        (mask,) = segmenter.decode(load_image(image), [MaskPrompt.from_box(np.round(box))])
        assert any(np.array_equal(mask, m) for m in masks)
    assert any(np.array_equal(shown.masks[1], m) for m in masks)  # the untouched box keeps its mask


def test_clicks_on_the_preview_repair_a_mask_make_a_new_object_and_undo(page, label_studio, project, pipeline):
    """A right click with detection #1 chosen adds a negative point to its box prompt, a click a positive one; with
    "a new object" chosen, a click makes an object from that point alone; Undo click takes #1's click back. What is
    pushed is what the decoder made."""
    from pipeline import MaskPrompt
    from sync import rle_to_mask

    project_id, images = project
    (first, image), _ = images.items()
    shown = expected_result(pipeline, image)
    choose_project(page, label_studio, project_id)
    open_task(page, first)
    preview = page.locator("#ls-preview img")

    def click(fraction_x: float, fraction_y: float, said: str, button: str = "left") -> tuple[int, int]:
        """Click at a fraction of the preview's box (the image sits in its middle) and read where the app says the
        click landed, in image pixels."""
        frame = preview.bounding_box()
        page.mouse.click(
            frame["x"] + frame["width"] * fraction_x, frame["y"] + frame["height"] * fraction_y, button=button
        )
        expect(page.locator("#ls-message")).to_contain_text(said)
        x, y = re.search(r"at \((\d+), (\d+)\)", page.locator("#ls-message").inner_text()).groups()
        return int(x), int(y)

    page.get_by_role("combobox", name="A click repairs", exact=True).click()
    page.get_by_role("option", name=re.compile(r"^#1 ")).click()
    removed = click(0.4, 0.45, "#1: click 1 at", button="right")  # a right click removes, whatever "A click" says
    added = click(0.55, 0.55, "#1: click 2 at")
    page.locator("#ls-undo-click").click()  # takes back the last click on #1: `added`
    expect(page.locator("#ls-message")).to_contain_text("#1: last click undone")
    page.get_by_role("combobox", name="A click repairs", exact=True).click()
    page.get_by_role("option", name="a new object", exact=True).click()
    new = click(0.7, 0.3, f"#{len(shown) + 1}: new object at")
    expect(page.locator("#ls-review .gl-review-row")).to_have_count(len(shown) + 1)
    page.locator("#ls-kind").get_by_label("annotation").check()
    page.locator("#ls-push").click()

    expect(page.locator("#ls-message")).to_contain_text("Pushed annotation")
    stored = label_studio.api("GET", f"/api/tasks/{first}/annotations/")[0]["result"]
    masks = [rle_to_mask(r) for r in stored if r["type"] == "brushlabels"]
    assert len(masks) == len(shown) + 1 and added != removed
    segmenter, picture = pipeline.segmenters.get("sam_tiny_test"), load_image(image)
    (repaired,) = segmenter.decode(
        picture, [MaskPrompt(box=tuple(shown.xyxy[0]), points=(removed,), positive=(False,))]
    )
    (from_click,) = segmenter.decode(picture, [MaskPrompt(points=(new,), positive=(True,))])
    assert not np.array_equal(repaired, shown.masks[0])  # the click changed #1's mask
    assert any(np.array_equal(repaired, m) for m in masks) and any(np.array_equal(from_click, m) for m in masks)


def test_keyboard_shortcuts_choose_relabel_drop_and_push(page, label_studio, project, pipeline):
    project_id, images = project
    (first, image), (second, _) = images.items()
    shown = expected_result(pipeline, image)
    assert len(shown) >= 3
    choose_project(page, label_studio, project_id)
    open_task(page, first)
    expect(page.locator("#ls-keys-help")).to_contain_text("drop it")
    page.locator("#ls-summary").click()  # focus on the page, not in a text field
    page.keyboard.press("ArrowDown")
    expect(page.locator("#ls-repair-target input")).to_have_value(re.compile(r"^#1 "))
    page.keyboard.press("ArrowDown")
    expect(page.locator("#ls-repair-target input")).to_have_value(re.compile(r"^#2 "))
    other = CONFIG.labels[1] if shown.labels[1] != CONFIG.labels[1] else CONFIG.labels[0]
    page.keyboard.press(str(CONFIG.labels.index(other) + 1))
    expect(page.get_by_role("combobox", name="Label of #2", exact=True)).to_have_value(other)
    page.keyboard.press("ArrowUp")
    expect(page.locator("#ls-repair-target input")).to_have_value(re.compile(r"^#1 "))
    typed = page.get_by_role("combobox", name="Label of #3", exact=True)
    typed.press("x")  # typing in a field (here a menu's search) is typing, not a shortcut
    expect(typed).to_have_value(re.compile("x"))
    typed.press("Escape")
    page.locator("#ls-summary").click()
    expect(page.get_by_role("checkbox", name="Keep #1", exact=True)).to_be_checked()
    page.locator("#ls-summary").click()
    page.keyboard.press("x")
    expect(page.get_by_role("checkbox", name="Keep #1", exact=True)).not_to_be_checked()
    expect(page.locator("#ls-kept")).to_contain_text(f"{len(shown) - 1} of {len(shown)} kept")
    page.locator("#ls-kind").get_by_label("annotation").check()
    page.locator("#ls-summary").click()
    page.keyboard.press("Enter")

    expect(page.locator("#ls-message")).to_contain_text("Pushed annotation")
    stored = label_studio.api("GET", f"/api/tasks/{first}/annotations/")[0]["result"]
    kept = shown[1:].with_labels([other, *shown.labels[2:]])
    rectangles = [r for r in stored if r["type"] == "rectanglelabels"]
    assert Counter(r["value"]["rectanglelabels"][0] for r in rectangles) == Counter(kept.labels)
    expect(page.locator("#ls-task")).to_contain_text(f"Task #{second}")


def test_a_click_on_a_large_photos_smaller_preview_lands_on_the_photos_pixel(page, label_studio):
    """A 3200x2400 task is previewed at 1600x1200: a click in its middle is pixel (1600, 1200) of the photo."""
    project_id = label_studio.create_project(title="ui large photo")
    large, _ = label_studio.upload_images(
        project_id, {"large.png": smooth_png(41, (3200, 2400)), "small.png": smooth_png(42)}
    )
    choose_project(page, label_studio, project_id)
    open_task(page, large)
    page.get_by_role("combobox", name="A click repairs", exact=True).click()
    page.get_by_role("option", name="a new object", exact=True).click()
    frame = page.locator("#ls-preview img").bounding_box()
    page.mouse.click(frame["x"] + frame["width"] / 2, frame["y"] + frame["height"] / 2)
    expect(page.locator("#ls-message")).to_contain_text("new object at")
    x, y = map(int, re.search(r"at \((\d+), (\d+)\)", page.locator("#ls-message").inner_text()).groups())
    assert abs(x - 1600) <= 40 and abs(y - 1200) <= 40, (x, y)


def test_a_row_hover_outlines_its_box_a_click_selects_one_and_hidden_masks_are_still_pushed(
    page, label_studio, project, pipeline
):
    """Hovering review row #n outlines box #n on the preview; with "selects a box", a click inside a box chooses
    that detection (its row marked, the preview highlighting it) and the keys act on it; "Show masks" off draws the
    boxes only, and the push still carries every kept mask."""
    import io

    from PIL import Image

    from pipeline import render_preview
    from ui.detections import row_at

    first, image, shown = review_first_task(page, label_studio, project, pipeline, at_least=2)
    page.locator("#ls-review .gl-review-row").nth(1).hover()
    outline = page.locator(".gl-hover")
    expect(outline).to_be_visible()
    picture, drawn = picture_box(page, "#ls-preview img"), outline.bounding_box()
    x0, y0, x1, y1 = shown.xyxy[1] / [320, 240, 320, 240]
    assert abs(drawn["x"] + 3 - (picture["x"] + x0 * picture["width"])) <= 2
    assert abs(drawn["y"] + 3 - (picture["y"] + y0 * picture["height"])) <= 2
    assert abs(drawn["height"] - (y1 - y0) * picture["height"]) <= 8

    page.locator("#ls-click-kind").get_by_label("selects a box").check()
    target = int(np.argmin((shown.xyxy[:, 2:] - shown.xyxy[:, :2]).prod(axis=1)))
    cx, cy = (shown.xyxy[target, :2] + shown.xyxy[target, 2:]) / 2
    assert row_at(shown, cx, cy) == target
    page.locator("#ls-preview").scroll_into_view_if_needed()
    picture = picture_box(page, "#ls-preview img")
    before = page.locator("#ls-preview img").get_attribute("src")
    page.mouse.click(
        float(picture["x"] + cx / 320 * picture["width"]), float(picture["y"] + cy / 240 * picture["height"])
    )
    expect(page.locator("#ls-message")).to_contain_text(f"#{target + 1} selected")
    expect(page.locator("#ls-repair-target input")).to_have_value(re.compile(rf"^#{target + 1} "))
    expect(page.locator("#ls-review .gl-review-row.gl-selected")).to_have_count(1)
    expect(page.locator("#ls-review .gl-review-row.gl-selected #ls-keep-" + str(target))).to_have_count(1)
    expect(page.locator("#ls-preview img")).not_to_have_attribute("src", before)  # drawn with the highlight
    page.locator("#ls-summary").click()
    page.keyboard.press("x")  # the keys act on the detection the click chose
    expect(page.get_by_role("checkbox", name=f"Keep #{target + 1}", exact=True)).not_to_be_checked()
    kept = [i for i in range(len(shown)) if i != target]

    def preview_pixels():
        src = page.locator("#ls-preview img").get_attribute("src")
        return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"), dtype=np.int16)

    masked = preview_pixels()
    page.locator("#ls-show-masks").get_by_label("Show masks").uncheck()
    expect(page.locator("#ls-preview img")).not_to_have_attribute(
        "src", re.compile(re.escape(page.locator("#ls-preview img").get_attribute("src")) + "$")
    )
    hidden = preview_pixels()
    plain = np.asarray(render_preview(load_image(image), shown[[]]), dtype=np.int16)
    inside = np.asarray(Image.fromarray(shown[kept].masks.any(axis=0)).resize(plain.shape[1::-1]))
    assert inside.sum() > 500  # inside the kept masks (lines and tags are drawn on both previews)
    assert np.abs(hidden - plain)[inside].mean() < np.abs(masked - plain)[inside].mean() / 2

    page.locator("#ls-kind").get_by_label("annotation").check()
    page.locator("#ls-push").click()
    expect(page.locator("#ls-message")).to_contain_text("Pushed annotation")
    stored = label_studio.api("GET", f"/api/tasks/{first}/annotations/")[0]["result"]
    assert sum(r["type"] == "brushlabels" for r in stored) == len(kept)  # hidden on screen, pushed all the same


def test_the_box_editor_gets_the_image_only_while_its_tab_is_shown(page, label_studio, project, pipeline, monkeypatch):
    """The editor's copy of the image (a PNG of the full photo) is made when its tab is opened and while it is
    shown, not for every detection, click or untick on the preview."""
    from ui.review import Review

    made = []
    editor_value = Review.editor_value
    monkeypatch.setattr(Review, "editor_value", lambda self, colors: made.append(1) or editor_value(self, colors))
    _, _, shown = review_first_task(page, label_studio, project, pipeline, at_least=3)
    page.get_by_role("checkbox", name="Keep #3", exact=True).uncheck()
    expect(page.locator("#ls-kept")).to_contain_text(f"{len(shown) - 1} of {len(shown)} kept")
    assert made == []
    page.get_by_role("tab", name="Edit boxes").click()
    expect(page.locator("#ls-editor canvas")).to_be_visible()
    page.wait_for_timeout(500)
    assert len(made) == 1
    page.get_by_role("checkbox", name="Keep #2", exact=True).uncheck()  # the editor follows while shown
    expect(page.locator("#ls-kept")).to_contain_text(f"{len(shown) - 2} of {len(shown)} kept")
    page.wait_for_timeout(500)
    assert len(made) == 2
    page.get_by_role("tab", name="What will be pushed").click()
    page.wait_for_timeout(300)
    page.get_by_role("checkbox", name="Keep #2", exact=True).check()
    expect(page.locator("#ls-kept")).to_contain_text(f"{len(shown) - 1} of {len(shown)} kept")
    page.wait_for_timeout(500)
    assert len(made) == 2


def test_the_zoom_stays_for_a_repair_and_resets_for_the_next_task(page, label_studio, project, pipeline):
    review_first_task(page, label_studio, project, pipeline, at_least=1)
    preview = page.locator("#ls-preview img")
    frame = preview.bounding_box()
    page.mouse.move(frame["x"] + frame["width"] / 2, frame["y"] + frame["height"] / 2)
    page.mouse.wheel(0, -400)
    expect(preview).to_have_attribute("style", re.compile(r"scale\("))
    before = preview.get_attribute("src")
    page.get_by_role("checkbox", name="Keep #1", exact=True).uncheck()  # a new preview of the same task
    expect(preview).not_to_have_attribute("src", before)
    expect(preview).to_have_attribute("style", re.compile(r"scale\("))
    page.locator("#ls-skip").click()
    expect(page.locator("#ls-task")).to_contain_text("2 of 2 on this page")
    expect(preview).not_to_have_attribute("style", re.compile(r"scale\("))
