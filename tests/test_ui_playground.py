"""The playground as a user drives it in chromium: real app, tiny random models of the real architectures."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import supervision as sv
from PIL import Image
from playwright.sync_api import expect

from pipeline import DEFAULT_BOX_THRESHOLD, Options, load_image, render_preview
from tests.browser import grid_row, grid_rows, picture_box, set_slider, smooth_png
from tests.counting import count_calls
from tests.labelstudio import serve
from ui.detections import threshold_text

pytest_plugins = ["tests.browser"]


def fresh_image(tmp_path, seed: int):
    """A PNG file no other test has used, so the pipeline's caches start cold for it."""
    path = tmp_path / f"photo-{seed}.png"
    path.write_bytes(smooth_png(seed))
    return path


def run_prompt(page, image_path, prompt: str) -> None:
    page.locator("#pg-prompt textarea").fill(prompt)
    page.locator("#pg-image input[type=file]").set_input_files(str(image_path))
    expect(page.locator("#pg-message")).to_contain_text(f"for “{prompt}”")


def test_prompt_shows_rendered_boxes_table_and_json(page, pipeline, tmp_path):
    path = fresh_image(tmp_path, seed=1)
    run_prompt(page, path, "dog. fence")
    expect(page.locator("#model-status")).to_contain_text("Random weights")  # the tests' models, said so

    expected = pipeline(load_image(path), "dog. fence", Options(DEFAULT_BOX_THRESHOLD))
    assert len(expected) > 0, "the tiny model finds nothing on this image: pick another seed"
    assert grid_rows(page, "#pg-table") == len(expected)
    assert f"{len(expected)} detections" in page.locator("#pg-message").inner_text()
    number, label, phrase, score, box = grid_row(page, "#pg-table", 1)
    assert (label, phrase) == (expected.labels[0], expected.phrases[0])
    assert float(score) == round(float(expected.scores[0]), 3)

    src = page.locator("#pg-result img").get_attribute("src")
    shown = np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"), dtype=np.int16)
    drawn = np.asarray(
        render_preview(load_image(path), expected, numbers=list(range(1, len(expected) + 1))), dtype=np.int16
    )
    plain = np.asarray(render_preview(load_image(path), expected[[]]), dtype=np.int16)
    assert shown.shape == drawn.shape
    # JPEG noise aside, the page shows the annotated image, not the upload.
    assert np.abs(shown - drawn).mean() < np.abs(shown - plain).mean() / 2

    with page.expect_download() as download:
        page.locator("#pg-download").click()
    exported = json.loads(download.value.path().read_text())
    assert exported["prompt"] == "dog. fence"
    assert exported["detections"] == expected.to_dict()["detections"]

    # this image and one more, with the same prompt, as a COCO dataset read back by supervision
    more = fresh_image(tmp_path, seed=9)
    page.locator("#pg-more-images input[type=file]").set_input_files(str(more))
    expect(page.get_by_role("combobox", name="Dataset format", exact=True)).to_have_value("coco")  # a named control
    page.locator("#pg-make-dataset").click()
    expect(page.locator("#pg-message")).to_contain_text("coco dataset of 2 images.")
    with page.expect_download() as download:
        page.locator("#pg-dataset a").first.click()
    with zipfile.ZipFile(download.value.path()) as archive:
        archive.extractall(tmp_path / "dataset")
    dataset = sv.DetectionDataset.from_coco(
        str(tmp_path / "dataset" / "images"), str(tmp_path / "dataset" / "annotations.json")
    )
    found = {Path(name).name: (image, detections) for name, image, detections in dataset}
    assert sorted(found) == sorted([path.name, more.name])
    for name, want in [
        (path.name, expected),
        (more.name, pipeline(load_image(more), "dog. fence", Options(DEFAULT_BOX_THRESHOLD))),
    ]:
        image, got = found[name]
        assert image.shape[:2] == (want.height, want.width)
        assert sorted(dataset.classes[c] for c in got.class_id) == sorted(want.labels)
        np.testing.assert_allclose(
            got.xyxy[np.argsort(got.xyxy[:, 0])],
            np.clip(want.xyxy, 0, [want.width, want.height] * 2)[np.argsort(want.xyxy[:, 0])],
            atol=1.0,
        )


def test_threshold_slider_refilters_cached_output_without_model_run(page, pipeline, tmp_path):
    path = fresh_image(tmp_path, seed=2)
    with count_calls(pipeline.detector.model) as forwards:
        run_prompt(page, path, "cat")
        assert forwards.count == 1
        scores = pipeline(load_image(path), "cat", Options(DEFAULT_BOX_THRESHOLD)).scores
        assert len(scores) >= 2, "the tiny model finds too little on this image: pick another seed"
        # The slider step whose count is closest to half: any move that changes the count will do.
        steps = np.round(np.arange(DEFAULT_BOX_THRESHOLD + 0.01, 1.0, 0.01), 2)
        threshold = float(min(steps, key=lambda t: abs((scores > t).sum() - len(scores) / 2)))
        wanted = int((scores > threshold).sum())
        assert wanted != len(scores)

        set_slider(page, "#pg-box", threshold)
        expect(page.locator("#pg-message")).to_contain_text(f"box ≥ {threshold_text(threshold)}")

        assert grid_rows(page, "#pg-table") == wanted
        assert forwards.count == 1


def test_duplicate_slider_refilters_cached_output_without_model_run(page, pipeline, tmp_path):
    path = fresh_image(tmp_path, seed=4)
    with count_calls(pipeline.detector.model) as forwards:
        run_prompt(page, path, "cat")
        ran = forwards.count
        every = len(pipeline(load_image(path), "cat", Options(DEFAULT_BOX_THRESHOLD, nms_threshold=1.0)))
        fewer = len(pipeline(load_image(path), "cat", Options(DEFAULT_BOX_THRESHOLD, nms_threshold=0.1)))
        assert fewer < every, "the tiny model's boxes on this image do not overlap: pick another seed"

        rows = page.locator("#pg-table [role=grid]")
        set_slider(page, "#pg-nms", 1.0)
        expect(rows).to_have_attribute("aria-rowcount", str(every + 1))  # the header row counts too
        set_slider(page, "#pg-nms", 0.1)
        expect(rows).to_have_attribute("aria-rowcount", str(fewer + 1))
        assert forwards.count == ran


def test_new_prompt_on_same_image_reuses_segmenter_embedding(page, pipeline, tmp_path):
    path = fresh_image(tmp_path, seed=3)
    page.locator("#pg-mode").get_by_text("Boxes + masks").click()
    page.locator("#pg-segmenter input").fill("sam_tiny_test")
    page.locator("#pg-segmenter input").press("Enter")
    encoder = pipeline.segmenters.get("sam_tiny_test").predictor.model.image_encoder
    with count_calls(encoder) as embeddings:
        run_prompt(page, path, "dog")
        page.locator("#pg-prompt textarea").fill("cat. tree")
        page.locator("#pg-prompt textarea").press("Enter")
        expect(page.locator("#pg-message")).to_contain_text("for “cat. tree”")
    assert embeddings.count == 1
    assert "sam_tiny_test" in page.locator("#model-status").inner_text()


def test_empty_prompt_is_explained_not_run(page, tmp_path):
    page.locator("#pg-image input[type=file]").set_input_files(str(fresh_image(tmp_path, seed=4)))
    expect(page.locator("#pg-message")).to_contain_text("type what to look for")
    page.locator("#pg-run").click()
    expect(page.locator("#pg-message")).to_contain_text("The prompt is empty")


def test_missing_detector_weights_show_the_fix_in_model_status(open_page, tmp_path):
    from app import create_app
    from pipeline import LazyPipeline, PipelineSettings
    from sync import BackendSettings

    models = LazyPipeline(PipelineSettings(detector=str(tmp_path / "no-such-detector"), offline=True))
    with serve(create_app(BackendSettings(state_dir=tmp_path), models)) as url:
        page = open_page(url)
        expect(page.locator("#model-status")).to_contain_text("not loaded yet")
        page.locator("#load-models").click()
        expect(page.locator("#model-status")).to_contain_text("failed to load")
        expect(page.locator("#model-status")).to_contain_text("GROUNDLABEL_DETECTOR=/path/to/dir")


def test_the_run_message_shows_thresholds_as_set_and_a_long_prompt_cut_short(photo):
    from pipeline import DetectionResult
    from ui.detections import PROMPT_SHOWN, Query, summary

    long_prompt = ". ".join(f"thing {i}" for i in range(400))  # ~3000 characters
    empty = DetectionResult(
        width=640,
        height=480,
        xyxy=np.zeros((0, 4), np.float32),
        scores=np.zeros(0, np.float32),
        phrases=[],
        prompt_phrases=[],
        labels=[],
    )
    line = summary(empty, Query(load_image(photo), "photo.png", long_prompt), 0.04, 0.9995, 0.25)

    assert "box ≥ 0.9995, text ≥ 0.25" in line
    assert long_prompt[: PROMPT_SHOWN - 1] + "…" in line and len(line) < 400


def test_on_a_phone_the_result_and_its_message_come_right_after_the_detect_button(page, tmp_path):
    page.set_viewport_size({"width": 390, "height": 844})
    run_prompt(page, fresh_image(tmp_path, seed=12), "dog")

    detect = page.locator("#pg-run").bounding_box()
    result, message = page.locator("#pg-result").bounding_box(), page.locator("#pg-message").bounding_box()
    sliders = page.locator("#pg-box").bounding_box()
    assert result["x"] >= 0 and result["x"] + result["width"] <= 390  # on the screen, not beside it
    assert result["y"] - (detect["y"] + detect["height"]) < 300  # less than half a phone screen below the button
    assert message["y"] < sliders["y"]  # the answer before the knobs that tune it


def test_choosing_another_detector_runs_it_or_says_why_it_cannot(page, pipeline, tmp_path):
    run_prompt(page, fresh_image(tmp_path, seed=12), "dog. fence")
    page.get_by_role("combobox", name="Detector", exact=True).click()
    page.get_by_role("option", name="mm-grounding-dino-tiny", exact=True).click()
    # offline test machine: not downloadable, so the sentence names the weights and the fix; nothing crashes
    expect(page.locator("#pg-message")).to_contain_text("mm_grounding_dino_tiny_o365v1_goldg_v3det")
    expect(page.locator(".toast-body.error")).to_have_count(0)
    page.get_by_role("combobox", name="Detector", exact=True).click()
    page.get_by_role("option", name="(this app's)").click()
    expect(page.locator("#pg-message")).to_contain_text("detections for “dog. fence”")


def test_a_detector_without_a_text_threshold_hides_its_slider_and_runs(page, pipeline, tmp_path, monkeypatch):
    """OWLv2 (its local copy named by GROUNDLABEL_OWLV2_BASE_CHECKPOINT) scores whole phrases: choosing it hides
    the text threshold and the message names none; choosing the app's detector brings the slider back."""
    from dataclasses import replace

    from pipeline.testing.detectors import save_owlv2

    owl = save_owlv2(tmp_path / "owlv2")
    monkeypatch.setattr(
        pipeline,
        "settings",
        replace(pipeline.settings, checkpoints={**pipeline.settings.checkpoints, "owlv2-base": str(owl)}),
    )
    run_prompt(page, fresh_image(tmp_path, seed=13), "dog. fence")
    expect(page.locator("#pg-text")).to_be_visible()
    page.get_by_role("combobox", name="Detector", exact=True).click()
    page.get_by_role("option", name="owlv2-base", exact=True).click()
    expect(page.locator("#pg-text")).to_be_hidden()
    expected = pipeline(
        load_image(fresh_image(tmp_path, seed=13)),
        "dog. fence",
        Options(DEFAULT_BOX_THRESHOLD, 0.0, detector="owlv2-base"),
    )
    expect(page.locator("#pg-message")).to_contain_text(f"{len(expected)} detection")
    expect(page.locator("#pg-message")).not_to_contain_text("text ≥")
    assert grid_rows(page, "#pg-table") == len(expected)
    page.get_by_role("combobox", name="Detector", exact=True).click()
    page.get_by_role("option", name="(this app's)").click()
    expect(page.locator("#pg-text")).to_be_visible()
    expect(page.locator("#pg-message")).to_contain_text("text ≥")


def test_the_result_fills_its_box_a_row_hover_outlines_its_box_and_a_click_selects_it_zoomed_or_not(
    page, pipeline, tmp_path
):
    """The 320x240 result is drawn 1024 px wide (it fills the box and reads at any zoom); hovering table row #n
    outlines box #n on the image; a click inside a box selects it (highlight and its number in the message); the
    wheel zooms about the pointer and a click there still lands on the same pixel."""
    from ui.detections import row_at

    path = fresh_image(tmp_path, seed=1)
    run_prompt(page, path, "dog. fence")
    expected = pipeline(load_image(path), "dog. fence", Options(DEFAULT_BOX_THRESHOLD))
    picture = picture_box(page, "#pg-result img")
    assert picture["natural"] == 1024 and picture["width"] > 320 + 100  # larger than the upload's own 320 px

    row = 2 if len(expected) > 1 else 1
    page.locator(f"#pg-table [role=row][aria-rowindex='{row + 1}'] [role=gridcell]").first.hover()
    outline = page.locator(".gl-hover")
    expect(outline).to_be_visible()
    picture = picture_box(page, "#pg-result img")  # where it is now (hovering may have scrolled the page)
    drawn, (x0, y0, x1, y1) = outline.bounding_box(), expected.xyxy[row - 1] / [320, 240, 320, 240]
    assert abs(drawn["x"] + 3 - (picture["x"] + x0 * picture["width"])) <= 2
    assert abs(drawn["y"] + 3 - (picture["y"] + y0 * picture["height"])) <= 2
    assert abs(drawn["width"] - (x1 - x0) * picture["width"]) <= 8  # the outline's own 3 px border on each side
    assert abs(drawn["height"] - (y1 - y0) * picture["height"]) <= 8
    page.locator("#pg-prompt textarea").hover()
    expect(outline).to_have_count(0)  # the pointer left the row: no outline
    page.locator("#pg-result").scroll_into_view_if_needed()
    picture = picture_box(page, "#pg-result img")

    # a point inside some box: the middle of the smallest one, which no other box can claim
    target = int(np.argmin((expected.xyxy[:, 2:] - expected.xyxy[:, :2]).prod(axis=1)))
    cx, cy = expected.xyxy[target, :2] + (expected.xyxy[target, 2:] - expected.xyxy[target, :2]) / 2
    assert row_at(expected, cx, cy) == target
    screen = (float(picture["x"] + cx / 320 * picture["width"]), float(picture["y"] + cy / 240 * picture["height"]))
    before = page.locator("#pg-result img").get_attribute("src")
    page.mouse.click(*screen)
    expect(page.locator("#pg-message")).to_contain_text(f"#{target + 1} selected:")
    expect(page.locator("#pg-result img")).not_to_have_attribute("src", before)  # drawn again, highlighted
    expect(page.locator("#pg-table [role=row].gl-selected")).to_have_attribute("aria-rowindex", str(target + 2))

    page.mouse.move(*screen)
    page.mouse.wheel(0, -400)  # zoom in about the pointer
    expect(page.locator("#pg-result img")).to_have_attribute("style", re.compile(r"scale\((1\.[1-9]|[2-9])"))
    zoomed = picture_box(page, "#pg-result img")
    assert zoomed["width"] > picture["width"] * 1.3
    assert abs(zoomed["x"] + cx / 320 * zoomed["width"] - screen[0]) <= 2  # the pixel under the pointer stays
    # zoomed, a click on an empty spot says which pixel it hit: the one drawn there
    frame = page.locator("#pg-result img").evaluate(
        "(img) => { const r = img.parentElement.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }"
    )
    spots = [
        (frame[0] + (frame[2] - frame[0]) * fx, frame[1] + (frame[3] - frame[1]) * fy)
        for fx in np.linspace(0.1, 0.9, 9)
        for fy in np.linspace(0.1, 0.9, 9)
    ]
    pixel = {
        spot: ((spot[0] - zoomed["x"]) / zoomed["width"] * 320, (spot[1] - zoomed["y"]) / zoomed["height"] * 240)
        for spot in spots
    }
    empty = next(
        spot
        for spot in spots
        if 2 <= pixel[spot][0] <= 318 and 2 <= pixel[spot][1] <= 238 and row_at(expected, *pixel[spot]) is None
    )
    page.mouse.click(*empty)
    expect(page.locator("#pg-message")).to_contain_text("No box at")
    x, y = map(int, re.search(r"No box at \((\d+), (\d+)\)", page.locator("#pg-message").inner_text()).groups())
    assert abs(x - pixel[empty][0]) <= 1.5 and abs(y - pixel[empty][1]) <= 1.5, ((x, y), pixel[empty])
    page.mouse.click(*screen)
    expect(page.locator("#pg-message")).to_contain_text(f"#{target + 1} selected:")
    # a drag pans the zoomed picture and is not a click (one on the empty spot would say "No box at")
    page.mouse.move(*empty)
    page.mouse.down()
    page.mouse.move(empty[0] - 40, empty[1] - 30, steps=4)
    page.mouse.up()
    panned = picture_box(page, "#pg-result img")
    assert panned["x"] != zoomed["x"] or panned["y"] != zoomed["y"]
    page.wait_for_timeout(500)
    assert "No box at" not in page.locator("#pg-message").inner_text()
