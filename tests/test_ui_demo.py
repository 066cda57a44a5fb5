"""``python app.py --demo`` on a fresh clone: no weights, no network; the toy models find the shapes of the example
scenes, under the right names, and the page says it runs toy models; clicks on the preview repair a mask to the
right pixels (the toy SAM), through a real Label Studio."""

from __future__ import annotations

import numpy as np
import pytest
from playwright.sync_api import expect

from pipeline import Options, load_image
from pipeline.testing import demo
from pipeline.testing import shapes as S
from sync import BackendSettings
from sync.testing import serve
from tests.browser import grid_row, grid_rows

pytest_plugins = ["tests.browser"]


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    from app import create_app

    with serve(create_app(BackendSettings(state_dir=tmp_path_factory.mktemp("demo")), demo=True)) as url:
        yield url


def test_the_demo_finds_the_example_scenes_shapes_with_toy_models_and_says_so(open_page, demo_url, tmp_path):
    page = open_page(demo_url)
    expect(page.locator("#model-status")).to_contain_text("Demo mode: toy models trained on coloured shapes")
    (path, prompt), *_ = demo.demo_examples(tmp_path)
    image, shapes = S.make_scene(np.random.default_rng(demo.EXAMPLE_SEEDS[0]), size=(320, 240), shapes=3, min_size=0.25)

    page.get_by_text(prompt, exact=True).first.click()  # the first example: its scene and prompt
    expect(page.locator("#pg-message")).to_contain_text(f"for “{prompt}”")

    pipeline = S.load_shapes_pipeline()  # the same committed models, run directly at the UI's default thresholds
    result = pipeline(load_image(path), prompt, Options())
    assert grid_rows(page, "#pg-table") == len(result)
    right = 0
    for shape in shapes:  # a box on the shape, named after it
        ious = S.box_iou(shape.xyxy, result.xyxy)[0]
        right += any(ious[i] >= 0.5 and result.labels[i] == shape.name for i in range(len(result)))
    assert right >= 2, (result.xyxy, result.labels)
    shown = {grid_row(page, "#pg-table", n)[1] for n in range(1, len(result) + 1)}
    assert shown == set(result.labels) and shown <= {shape.name for shape in shapes}


def test_clicks_repair_a_mask_to_the_right_pixels_with_the_toy_sam(open_page, demo_url, label_studio):
    """Refinement's right answer in the Label Studio tab: a click on the ball makes a new object whose mask is the
    ball; a positive click on the box adds the box to it (area grows by the box's); undone and shift-clicked (a
    negative point), the box stays out; the mask pushed to Label Studio is the ball's."""
    import io
    import re

    from sync import rle_to_mask
    from sync.testing import GROUNDING_DINO_CONFIG
    from tests.browser import picture_box
    from ui.testing import choose_project, open_task

    image, (ball, box) = S.make_scene(
        np.random.default_rng(3), size=(320, 240), min_size=0.25, shapes=[("blue", "circle"), ("red", "square")]
    )
    png = io.BytesIO()
    image.save(png, format="PNG")
    config = GROUNDING_DINO_CONFIG.replace('"cats"', '"ball"').replace('"house"', '"box"')
    project = label_studio.create_project(config, title="toy clicks")
    (task,) = label_studio.upload_images(project, {"scene.png": png.getvalue()})

    page = open_page(demo_url)
    choose_project(page, label_studio.url, label_studio.token, project)
    open_task(page, task)
    found = int(re.search(r"of (\d+) kept", page.locator("#ls-kept").inner_text()).group(1))  # the detector's
    expect(page.locator("#ls-review .gl-review-row")).to_have_count(found)

    def centre(mask):
        ys, xs = np.nonzero(mask)
        k = int(np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2))
        return xs[k], ys[k]

    def click(point, said: str, shift: bool = False) -> int:
        """Click (or shift-click) image pixel ``point`` on the preview; the new mask's area, as the message says."""
        picture = picture_box(page, "#ls-preview img")
        if shift:
            page.keyboard.down("Shift")
        page.mouse.click(
            float(picture["x"] + (point[0] + 0.5) / 320 * picture["width"]),
            float(picture["y"] + (point[1] + 0.5) / 240 * picture["height"]),
        )
        page.keyboard.up("Shift")
        expect(page.locator("#ls-message")).to_contain_text(said)
        return int(re.search(r"mask has (\d+) pixels", page.locator("#ls-message").inner_text()).group(1))

    page.get_by_role("combobox", name="A click repairs", exact=True).click()
    page.get_by_role("option", name="a new object", exact=True).click()
    page.locator("#ls-preview").scroll_into_view_if_needed()
    alone = click(centre(ball.mask), f"#{found + 1}: new object at")
    added = click(centre(box.mask), f"#{found + 1}: click 2 at")
    page.locator("#ls-undo-click").click()
    expect(page.locator("#ls-message")).to_contain_text(f"#{found + 1}: last click undone")
    kept_out = click(centre(box.mask), f"#{found + 1}: click 2 at", shift=True)  # "adds to it" still chosen
    assert abs(alone - ball.mask.sum()) < 0.15 * ball.mask.sum(), (alone, ball.mask.sum())
    assert added - alone > 0.7 * box.mask.sum(), (alone, added, box.mask.sum())  # the box joined the mask
    assert abs(kept_out - alone) < 0.1 * alone, (alone, kept_out)  # and a negative click keeps it out

    for number in range(1, found + 1):  # push the new object alone
        page.get_by_role("checkbox", name=f"Keep #{number}", exact=True).uncheck()
    page.locator("#ls-kind").get_by_label("annotation").check()
    page.locator("#ls-push").click()
    expect(page.locator("#ls-message")).to_contain_text("Pushed annotation")
    stored = label_studio.api("GET", f"/api/tasks/{task}/annotations/")[0]["result"]
    (mask,) = [rle_to_mask(region) for region in stored if region["type"] == "brushlabels"]
    assert S.mask_iou(mask, ball.mask) > 0.85 and (mask & box.mask).sum() < 0.05 * box.mask.sum()
