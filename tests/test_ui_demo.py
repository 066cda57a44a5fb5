"""``python app.py --demo`` on a fresh clone: no weights, no network; the toy models find the shapes of the example
scenes, under the right names, and the page says it runs toy models."""

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
    image, shapes = S.make_scene(np.random.default_rng(demo.EXAMPLE_SEEDS[0]), size=(320, 240), shapes=3,
                                 min_size=0.25)

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
