"""Label Studio's own editor, driven by hand in chromium against a real Label Studio and the ML backend over the toy
shapes models: a typed prompt draws masks on the named shapes and an accepted one is submitted; a smart click and a
smart box (mouse on the canvas, as the README says) give the clicked shape's mask; "Retrieve Predictions" from the
Data Manager's menu stores one prediction per task. What the editor drew is read from the answer it was given and
what it stored through the API, and compared with the generated scene's shapes."""

from __future__ import annotations

import io
import time
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
from playwright.sync_api import expect

from pipeline import LazyPipeline
from pipeline.testing import shapes as S
from sync import BackendSettings, rle_to_mask
from sync.testing import ADMIN_EMAIL, ADMIN_PASSWORD, SMART_TOOLS_CONFIG
from tests.browser import ARTIFACTS
from tests.labelstudio import backend_app, serve

pytest_plugins = ["tests.browser"]

LABELS = ("square", "circle", "triangle")
CONFIG = SMART_TOOLS_CONFIG.replace(
    '<Label value="cats"/><Label value="house"/>', "".join(f'<Label value="{label}"/>' for label in LABELS)
)
# The README's recommended project settings: opening a task shows no stored or collaborators' predictions.
PROJECT_SETTINGS = {"show_collab_predictions": False, "evaluate_predictions_automatically": False}
# Seed 32: the three shapes apart, the circle near the top (its accept control fits below it on the canvas).
SCENE_SEED = 32
WAIT_MS = 90_000  # a loaded 2-core machine: Label Studio, the models and chromium share it
CHIP_ROWS = {"click": 2, "smartbox": 3}  # the config's label rows: boxes, masks, smart click, smart box


@pytest.fixture(scope="module")
def editor(label_studio, tmp_path_factory):
    """A project with the README's smart-tools config (the shapes' labels), the backend over the toy models connected,
    three tasks showing the same scene; the scene's shapes by kind."""
    image, shapes = S.make_scene(
        np.random.default_rng(SCENE_SEED), shapes=[("blue", "circle"), ("red", "square"), ("green", "triangle")]
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    pipeline = S.load_shapes_pipeline()  # registers the shapes SAM that the settings name
    # output="auto" is GROUNDLABEL_OUTPUT's default: masks only (a box would put its accept pill on its mask's)
    settings = BackendSettings(
        segmenter=S.SHAPES_SEGMENTER, state_dir=tmp_path_factory.mktemp("editor-state"), output="auto"
    )
    with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url:
        project = label_studio.create_project(CONFIG)
        label_studio.api("PATCH", f"/api/projects/{project}", json=PROJECT_SETTINGS)
        tasks = label_studio.upload_images(project, {f"scene{i}.png": buffer.getvalue() for i in range(3)})
        label_studio.register_ml_backend(project, url)
        yield SimpleNamespace(project=project, tasks=tasks, size=image.size, shapes={s.kind: s for s in shapes})


@pytest.fixture
def signed_in(open_page, label_studio):
    """A chromium page signed in to Label Studio as the admin."""
    page = open_page(f"{label_studio.url}/user/login", ready="input[name=email]")
    page.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    page.fill("input[name=email]", ADMIN_EMAIL)
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/user/login" not in url)
    return page


def open_task(page, label_studio, editor, task: int):
    """The labeling screen of ``task``, its image shown, Auto-Annotation turned on (it is off on a first visit)."""
    page.goto(f"{label_studio.url}/projects/{editor.project}/data?task={task}")
    page.locator("img[src^=blob]").wait_for()
    toggle = page.locator("[data-testid=bottombar-auto-annotation-toggle]")
    toggle.click()
    expect(page.locator(".lsf-bottombar")).to_contain_text("Auto-Annotation")


def on_screen(page, editor, x: float, y: float) -> tuple[float, float]:
    """Where image pixel (x, y) is on the screen now."""
    image = page.locator("img[src^=blob]")
    image.scroll_into_view_if_needed()
    box = image.bounding_box()
    width, height = editor.size
    return float(box["x"] + x / width * box["width"]), float(box["y"] + y / height * box["height"])


def masks_of(result: list[dict]) -> list[tuple[str, np.ndarray]]:
    """(label, mask) of every brush region; a brush region without a label fails here."""
    brushes = [region for region in result if region["type"] == "brushlabels"]
    assert all(region["value"].get("brushlabels") for region in brushes), "a brush region lacks its label"
    return [(region["value"]["brushlabels"][0], rle_to_mask(region)) for region in brushes]


def answer_of(response) -> list[dict]:
    """The regions Label Studio's editor was given for an interactive request."""
    return response.json()["data"]["result"]


def submitted(label_studio, task: int) -> list[dict]:
    """The result of the one annotation of ``task``, once Label Studio has stored it."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while not (annotations := label_studio.api("GET", f"/api/tasks/{task}/annotations/")):
        assert time.monotonic() < deadline, f"task {task}: no annotation stored"
        time.sleep(0.5)
    (annotation,) = annotations
    return annotation["result"]


def use_smart_tool(page, row: str, label: str, tool: str) -> None:
    """The README's steps: pick ``label`` in the config's ``row``, hover Auto-Detect, choose its ``tool``."""
    page.locator(".lsf-labels").nth(CHIP_ROWS[row]).get_by_text(label, exact=True).click()
    page.locator(".lsf-tool:has(.lsf-toolbar__smart)").first.hover()
    page.click(f"[aria-label={tool}]")


def test_a_typed_prompt_draws_masks_on_the_named_shape_and_the_accepted_one_is_submitted(
    signed_in, label_studio, editor
):
    page, circle = signed_in, editor.shapes["circle"]
    open_task(page, label_studio, editor, editor.tasks[0])
    page.locator("textarea").first.fill("circle")
    with page.expect_response("**/interactive-annotating", timeout=WAIT_MS) as response:
        page.get_by_role("button", name="Add").click()

    answer = answer_of(response.value)
    drawn = masks_of(answer)
    assert drawn and all(label == "circle" and S.mask_iou(mask, circle.mask) >= 0.8 for label, mask in drawn)
    expect(page.locator(".lsf-bottombar")).to_contain_text(f"{len(answer)} suggestion")
    # The suggestion's own accept button: a 64x32 pill centred 10 px below its region (Label Studio's canvas).
    ys, xs = np.nonzero(drawn[0][1])
    middle, bottom = on_screen(page, editor, (xs.min() + xs.max() + 1) / 2, ys.max() + 1)
    page.mouse.click(middle + 16, bottom + 26)
    expect(page.get_by_text("Labeled regions will appear here")).to_be_hidden()  # the region is the annotation's now
    page.get_by_role("button", name="Submit").click()

    result = submitted(label_studio, editor.tasks[0])
    ((label, mask),) = masks_of(result)
    assert label == "circle" and S.mask_iou(mask, circle.mask) >= 0.8
    assert [r["value"]["text"] for r in result if r["type"] == "textarea"] == [["circle"]]


def test_a_smart_click_and_a_smart_box_by_hand_give_brush_regions_on_the_clicked_shapes(
    signed_in, label_studio, editor
):
    page, triangle, square = signed_in, editor.shapes["triangle"], editor.shapes["square"]
    open_task(page, label_studio, editor, editor.tasks[1])

    use_smart_tool(page, "click", "triangle", "key-point-tool")
    ys, xs = np.nonzero(triangle.mask)
    with page.expect_response("**/interactive-annotating", timeout=WAIT_MS) as response:
        page.mouse.click(*on_screen(page, editor, xs.mean(), ys.mean()))
    ((label, mask),) = masks_of(answer_of(response.value))
    assert label == "triangle" and S.mask_iou(mask, triangle.mask) >= 0.8
    expect(page.locator(".lsf-bottombar")).to_contain_text("1 suggestion")
    page.click("[data-testid=bottombar-accept-suggestions-button]")

    use_smart_tool(page, "smartbox", "square", "rectangle-tool")
    x0, y0, x1, y1 = square.xyxy
    page.mouse.move(*on_screen(page, editor, x0 - 2, y0 - 2))
    page.mouse.down()
    with page.expect_response("**/interactive-annotating", timeout=WAIT_MS) as response:
        page.mouse.move(*on_screen(page, editor, x1 + 2, y1 + 2), steps=8)
        page.mouse.up()
    ((label, mask),) = masks_of(answer_of(response.value))
    assert label == "square" and S.mask_iou(mask, square.mask) >= 0.8
    expect(page.locator(".lsf-bottombar")).to_contain_text("1 suggestion")
    ARTIFACTS.mkdir(exist_ok=True)  # the README's docs/smart-tools.jpg is one run's copy of this
    page.screenshot(path=str(ARTIFACTS / "smart-tools.jpg"), quality=70)
    page.click("[data-testid=bottombar-accept-suggestions-button]")
    page.get_by_role("button", name="Submit").click()

    result = submitted(label_studio, editor.tasks[1])
    assert {region["type"] for region in result} == {"brushlabels"}  # the click and the smart box are not kept
    stored = dict(masks_of(result))
    assert sorted(stored) == ["square", "triangle"]
    assert S.mask_iou(stored["triangle"], triangle.mask) >= 0.8 and S.mask_iou(stored["square"], square.mask) >= 0.8


def test_retrieve_predictions_from_the_data_manager_menu_stores_one_prediction_per_task(
    signed_in, label_studio, editor
):
    page = signed_in
    page.goto(f"{label_studio.url}/projects/{editor.project}/data")
    page.locator("input[type=checkbox]").first.check()  # the header's box selects every task
    page.get_by_role("button", name="Tasks Actions").click()
    page.get_by_text("Retrieve Predictions", exact=True).click()
    page.get_by_text("Please confirm your action").wait_for()
    page.click("[data-testid=dialog-ok-button]")

    deadline = time.monotonic() + WAIT_MS / 1000
    while len(per_task := Counter(p["task"] for p in predictions(label_studio, editor))) < len(editor.tasks):
        assert time.monotonic() < deadline, f"predictions per task after {WAIT_MS / 1000:.0f} s: {per_task}"
        time.sleep(1)
    assert per_task == {task: 1 for task in editor.tasks}
    for prediction in predictions(label_studio, editor):
        masks_of(prediction["result"])  # every region labelled


def predictions(label_studio, editor) -> list[dict]:
    return label_studio.api("GET", "/api/predictions/", params={"project": editor.project})
