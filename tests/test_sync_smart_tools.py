"""Label Studio's smart tools answered by the ML backend, through a real Label Studio: a smart keypoint or box gives
the segmenter's mask for it as a brush region with the clicked label, negative points take pixels away, a click
after a text prompt reuses the image embedding, EXIF-rotated images land upright, and clicks never queue behind a
batch. The right answers come from the shapes SAM (pipeline/testing/weights), which learned to segment a shape
from a click or a box."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from pipeline import LazyPipeline, MaskPrompt, load_image
from pipeline.testing import shapes as S
from sync import BackendSettings, ProjectConfig, rle_to_mask
from sync.errors import RequestError
from sync.smart import SmartRequest
from sync.testing import SMART_TOOLS_CONFIG
from tests.counting import count_calls
from tests.hostile import Answer, web_host
from tests.labelstudio import BOX, SEGMENTER, TEXT, backend_app, png, prompt_context, serve

# The README's config (text prompt, plain boxes, brushes, smart keypoints and boxes) with the shapes' labels.
SHAPES_CONFIG = SMART_TOOLS_CONFIG.replace('"cats"', '"ball"').replace('"house"', '"box"')


def keypoint(x: float, y: float, width: int, height: int, label: str, positive: bool = True) -> dict:
    """A smart keypoint result as Label Studio's labeling screen sends it (percent of the shown image)."""
    return {
        "id": f"k{x:.0f}-{y:.0f}",
        "from_name": "click",
        "to_name": "image",
        "type": "keypointlabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "origin": "manual",
        "is_positive": positive,
        "value": {"x": x / width * 100, "y": y / height * 100, "width": 0.6, "keypointlabels": [label]},
    }


def smart_box(xyxy, width: int, height: int, label: str) -> dict:
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    return {
        "id": "b1",
        "from_name": "smartbox",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "origin": "manual",
        "value": {
            "x": x0 / width * 100,
            "y": y0 / height * 100,
            "width": (x1 - x0) / width * 100,
            "height": (y1 - y0) / height * 100,
            "rotation": 0,
            "rectanglelabels": [label],
        },
    }


def interactive(label_studio, ml_id: int, task: int, results: list[dict]) -> dict:
    return label_studio.api(
        "POST", f"/api/ml/{ml_id}/interactive-annotating", json={"task": task, "context": {"result": results}}
    )["data"]


def centre(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def shapes_backend(label_studio, tmp_path_factory):
    """The ML backend over the shapes models, connected to a project with ``SHAPES_CONFIG``: (pipeline, project,
    ML backend id)."""
    pipeline = S.load_shapes_pipeline()
    settings = BackendSettings(segmenter=S.SHAPES_SEGMENTER, state_dir=tmp_path_factory.mktemp("smart-state"))
    with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url:
        project = label_studio.create_project(SHAPES_CONFIG)
        yield pipeline, project, label_studio.register_ml_backend(project, url)


@pytest.fixture(scope="module")
def scene():
    """A blue circle and a red square, apart enough to click one without the other."""
    image, shapes = S.make_scene(np.random.default_rng(3), shapes=[("blue", "circle"), ("red", "square")])
    return image, shapes


def test_smart_tags_are_prompts_and_text_prompt_boxes_go_to_the_plain_rectangle_tag():
    config = ProjectConfig.parse(SHAPES_CONFIG)

    assert [(c.name, c.type) for c in config.controls] == [("label", "rectanglelabels"), ("mask", "brushlabels")]
    assert [(t.name, t.type, t.labels) for t in config.smart_tools] == [
        ("click", "keypointlabels", ("ball", "box")),
        ("smartbox", "rectanglelabels", ("ball", "box")),
    ]
    assert ProjectConfig.parse(SMART_TOOLS_CONFIG).prompt == "prompt"
    assert SMART_TOOLS_CONFIG in (Path(__file__).parent.parent / "README.md").read_text()  # what users copy
    # Label Studio's Segment Anything example: smart tools and brushes only, smart="true" on the tag alone
    sam_example = ProjectConfig.parse("""<View><Image name="image" value="$image"/>
      <BrushLabels name="tag" toName="image"><Label value="Banana"/></BrushLabels>
      <KeyPointLabels name="tag2" toName="image" smart="true"><Label value="Banana"/></KeyPointLabels>
      <RectangleLabels name="tag3" toName="image" smart="true"><Label value="Banana"/></RectangleLabels></View>""")
    assert [c.name for c in sam_example.controls] == ["tag"]
    assert [t.name for t in sam_example.smart_tools] == ["tag2", "tag3"]


def test_smart_results_become_one_pixel_prompt_and_a_rotated_editor_view_is_refused():
    config = ProjectConfig.parse(SHAPES_CONFIG)
    turned = smart_box((20, 10, 60, 30), 200, 100, "box")
    turned["value"]["rotation"] = 90  # Label Studio turns a rectangle about its top-left corner
    request = SmartRequest.from_results(
        config,
        [
            {"from_name": "prompt", "type": "textarea", "value": {"text": ["ball"]}},  # the click wins over the text
            keypoint(50, 40, 200, 100, "ball"),
            keypoint(80, 20, 200, 100, "ball", positive=False),
            turned,
        ],
    )

    prompt = request.mask_prompt(200, 100)
    assert request.label == "box" and prompt.positive == (True, False)
    np.testing.assert_allclose(prompt.points, [(50, 40), (80, 20)])
    np.testing.assert_allclose(prompt.box, (0, 10, 20, 50))  # 40 x 20 px turned 90 degrees about (20, 10), clipped
    assert SmartRequest.from_results(config, prompt_context("ball")["result"]) is None
    with pytest.raises(RequestError, match="rotated in Label Studio's editor"):
        SmartRequest.from_results(config, [dict(keypoint(5, 5, 200, 100, "ball"), image_rotation=90)])


def test_a_smart_keypoint_gives_the_clicked_shape_as_a_brush_region_equal_to_the_segmenters_mask(
    label_studio, shapes_backend, scene
):
    pipeline, project, ml_id = shapes_backend
    image, (circle, square) = scene
    (task,) = label_studio.upload_images(project, {"shapes.png": png_bytes(image)})
    x, y = centre(circle.mask)

    answer = interactive(label_studio, ml_id, task, [keypoint(x, y, *image.size, "ball")])

    (region,) = answer["result"]
    assert region["type"] == "brushlabels" and region["from_name"] == "mask" and region["to_name"] == "image"
    assert region["value"]["brushlabels"] == ["ball"] and 0 < region["score"] <= 1
    assert (region["original_width"], region["original_height"]) == image.size
    mask = rle_to_mask(region)
    direct = pipeline.segmenters.get(S.SHAPES_SEGMENTER).decode(
        load_image(image), [MaskPrompt(points=((x, y),), positive=(True,))]
    )[0]
    np.testing.assert_array_equal(mask, direct)
    assert S.mask_iou(mask, circle.mask) >= 0.8 and (mask & square.mask).sum() < 0.05 * square.mask.sum()


def test_a_negative_keypoint_takes_its_object_out_of_the_mask(label_studio, shapes_backend, scene):
    pipeline, project, ml_id = shapes_backend
    image, (circle, square) = scene
    (task,) = label_studio.upload_images(project, {"shapes.png": png_bytes(image)})
    on_circle, on_square = keypoint(*centre(circle.mask), *image.size, "ball"), centre(square.mask)

    both = rle_to_mask(
        interactive(label_studio, ml_id, task, [on_circle, keypoint(*on_square, *image.size, "ball")])["result"][0]
    )
    without = rle_to_mask(
        interactive(label_studio, ml_id, task, [on_circle, keypoint(*on_square, *image.size, "ball", positive=False)])[
            "result"
        ][0]
    )

    assert (both & square.mask).sum() > 0.8 * square.mask.sum()  # two positive clicks: both shapes
    assert (without & square.mask).sum() < 0.05 * square.mask.sum()  # the negative click removed the square
    assert without.sum() < both.sum() and S.mask_iou(without, circle.mask) >= 0.8


def test_a_smart_box_gives_the_box_prompted_mask_with_its_label(label_studio, shapes_backend, scene):
    pipeline, project, ml_id = shapes_backend
    image, (circle, square) = scene
    (task,) = label_studio.upload_images(project, {"shapes.png": png_bytes(image)})

    answer = interactive(label_studio, ml_id, task, [smart_box(square.xyxy, *image.size, "box")])

    (region,) = answer["result"]
    assert region["value"]["brushlabels"] == ["box"]
    direct = pipeline.segmenters.get(S.SHAPES_SEGMENTER).decode(
        load_image(image), [MaskPrompt(box=tuple(square.xyxy))]
    )[0]
    np.testing.assert_array_equal(rle_to_mask(region), direct)
    assert S.mask_iou(direct, square.mask) >= 0.9


def test_a_click_on_an_exif_rotated_photo_lands_on_the_shape_in_the_upright_frame(label_studio, shapes_backend):
    image, (circle,) = S.make_scene(np.random.default_rng(11), size=(160, 120), shapes=[("blue", "circle")])
    stored = Image.fromarray(np.rot90(np.asarray(image), 1))  # shown turned 90 degrees clockwise: upright again
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=95, exif=exif)
    pipeline, project, ml_id = shapes_backend
    (task,) = label_studio.upload_images(project, {"turned.jpg": buffer.getvalue()})

    x, y = centre(circle.mask)

    answer = interactive(label_studio, ml_id, task, [keypoint(x, y, *image.size, "ball")])

    (region,) = answer["result"]
    assert (region["original_width"], region["original_height"]) == (160, 120)
    upright = load_image(buffer.getvalue())
    direct = pipeline.segmenters.get(S.SHAPES_SEGMENTER).decode(
        upright, [MaskPrompt(points=((x, y),), positive=(True,))]
    )[0]
    np.testing.assert_array_equal(rle_to_mask(region), direct)
    assert S.mask_iou(direct, circle.mask) >= 0.8


def test_a_smart_label_without_a_brush_tag_is_refused_with_the_reason(shapes_backend, tmp_path):
    pipeline = shapes_backend[0]
    config = SHAPES_CONFIG.replace(
        '<KeyPointLabels name="click" toName="image" smart="true">',
        '<KeyPointLabels name="click" toName="image" smart="true"><Label value="cup"/>',
    )
    settings = BackendSettings(segmenter=S.SHAPES_SEGMENTER, state_dir=tmp_path)
    image = png(40, 30)
    with (
        serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url,
        web_host({"/a.png": Answer(image)}) as host,
    ):
        response = httpx.post(
            f"{url}/predict",
            timeout=30,
            json={
                "tasks": [{"id": 1, "data": {"image": host("/a.png")}}],
                "project": "1.1",
                "label_config": config,
                "params": {"context": {"result": [keypoint(10, 10, 40, 30, "cup")]}},
            },
        )

    assert response.status_code == 400 and "'cup' is in no <BrushLabels>" in response.json()["detail"]


def test_a_text_prompt_then_a_click_on_the_same_task_embed_the_image_once(label_studio, pipeline, tmp_path):
    settings = BackendSettings(box_threshold=BOX, text_threshold=TEXT, segmenter=SEGMENTER, state_dir=tmp_path)
    project = label_studio.create_project(SMART_TOOLS_CONFIG)
    (task,) = label_studio.upload_images(project, {"cat.png": png(64, 48, seed=21)})
    segmenter = pipeline.segmenters.get(SEGMENTER)
    with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url:
        ml_id = label_studio.register_ml_backend(project, url)
        with (
            count_calls(segmenter.predictor.model.image_encoder) as encoder,
            count_calls(segmenter.predictor.model.mask_decoder) as decoder,
        ):
            text = interactive(label_studio, ml_id, task, prompt_context("cats")["result"][1:])
            after_text = decoder.count
            click = interactive(label_studio, ml_id, task, [keypoint(30, 20, 64, 48, "cats")])

    assert any(r["type"] == "brushlabels" for r in text["result"]) and after_text >= 1
    assert [r["value"]["brushlabels"] for r in click["result"]] == [["cats"]]
    assert encoder.count == 1 and decoder.count == after_text + 1  # the click ran the mask decoder only


def test_a_click_is_answered_while_a_batch_runs(label_studio, pipeline, tmp_path):
    settings = BackendSettings(box_threshold=BOX, text_threshold=TEXT, segmenter=SEGMENTER, state_dir=tmp_path)
    config = SMART_TOOLS_CONFIG
    project = label_studio.create_project(config)
    tasks = label_studio.upload_images(project, {f"{i}.png": png(48, 40, seed=300 + i) for i in range(4)})
    batch_tasks = [{"id": t, "data": label_studio.api("GET", f"/api/tasks/{t}")["data"]} for t in tasks[1:]]
    finished: list[float] = []
    with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url:
        ml_id = label_studio.register_ml_backend(project, url)

        def run_batch():
            httpx.post(
                f"{url}/predict",
                timeout=100,
                json={
                    "tasks": batch_tasks,
                    "project": f"{project}.1",
                    "label_config": config,
                    "params": {"context": None},
                },
            ).raise_for_status()
            finished.append(time.monotonic())

        with count_calls(pipeline.detector.model, delay=1.0):  # each batch task's detector forward takes 1 s
            batch = threading.Thread(target=run_batch)
            batch.start()
            time.sleep(0.5)
            started = time.monotonic()
            click = interactive(label_studio, ml_id, tasks[0], [keypoint(20, 20, 48, 40, "cats")])
            answered = time.monotonic()
            batch.join()

    assert [r["value"]["brushlabels"] for r in click["result"]] == [["cats"]]
    assert answered < finished[0] - 0.5 and answered - started < 1.0
