"""The committed shapes models (pipeline/testing/weights/) still find the right shape under the right label.

Unlike the random-weight models every other test uses, these learned a small world (pipeline.testing.shapes), so
a wrong box, a swapped label or a broken mask fails here. Evaluation only (no training), through the product's own
loaders; docs/toy-models.md has the full 200-scene figures these floors sit under.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.testing import shapes as S

# Floors under the committed models' figures (docs/toy-models.md; on these seeded samples: recall 0.93, precision
# 0.86, mask IoU 0.93 from the box, 0.86 from the central point), with a margin for another CPU. Random weights
# score ~0 on the detector and ~0.05 mask IoU, so a broken loader, tokenizer or label mapping fails here.
# The detector floors sit under the target (recall 95 %, precision 90 %), which it misses narrowly.
MIN_RECALL = 0.85
MIN_PRECISION = 0.78
MIN_MASK_IOU_BOX = 0.9
MIN_MASK_IOU_POINT = 0.8
SCENES = 60
# A right answer's box must fit its shape, not merely overlap it: a box squashed by the scene's aspect ratio passes
# IoU 0.5 but fails these. The committed detector meets them on square scenes only (0.94 median there); on 4:3 and
# 3:4 it returns every box squashed (median 0.76: docs/toy-models.md), so those tests are strict xfails until a
# retrained detector is committed (they then pass, and the strict marker fails the run: remove it).
MIN_BOX_IOU = 0.85  # every right-answer box
MIN_MEDIAN_BOX_IOU = 0.9  # median of the right boxes on scenes of each aspect ratio
SCENE_SIZES = {"4:3": (320, 240), "3:4": (240, 320), "16:9": (320, 180)}  # the demo's 320x240 and its kin
SQUASHED = pytest.mark.xfail(
    strict=True,
    reason="the committed toy detector squashes boxes on non-square scenes: median box IoU 0.76 on 4:3 and 3:4, "
    "0.59 on 16:9 (200 scenes each, docs/toy-models.md; issue 23 item 8)",
)
MAX_DEMO_BOX_OFFSET = 4  # px: a right box's corners from its shape's on the demo's 320x240 example scenes


@pytest.fixture(scope="module")
def shapes_pipeline():
    return S.load_shapes_pipeline()


def _png(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_weights_are_committed_and_small():
    files = [p for p in S.shapes_detector_dir().rglob("*") if p.is_file()] + [S.shapes_sam_checkpoint()]
    assert all(p.is_file() for p in files) and len(files) > 2
    assert sum(p.stat().st_size for p in files) <= 5_000_000  # 5 MB, the limit


@pytest.mark.parametrize(
    "size", [S.SHAPES_SCENE_SIZE, pytest.param(SCENE_SIZES["4:3"], marks=SQUASHED)], ids=["square", "4:3"]
)
def test_right_boxes_get_the_right_labels(shapes_pipeline, size):
    image, shapes = _ball_and_box_scene(size=size)
    assert [s.name for s in shapes] == ["blue circle", "red square"]
    result = S.run_pipeline(
        shapes_pipeline, _png(image), "blue circle:ball. red square:box", segmenter=S.SHAPES_SEGMENTER
    )
    for shape, label in zip(shapes, ["ball", "box"]):
        ious = S.box_iou(shape.xyxy, result.xyxy)[0] if len(result.xyxy) else np.zeros(0)
        hits = [i for i in range(len(ious)) if ious[i] >= MIN_BOX_IOU and result.labels[i] == label]
        assert hits, f"no {label!r} box on the {shape.name}: {result.xyxy.tolist()} {result.labels}"
        assert S.mask_iou(result.masks[hits[0]], shape.mask) >= 0.8
    assert set(result.labels) <= {"ball", "box"}
    for phrase in result.phrases:
        assert "[SEP]" not in phrase and "[CLS]" not in phrase and not phrase.startswith("##"), result.phrases


def test_the_prompt_decides_what_is_found(shapes_pipeline):
    """Scenes of two shapes, asked for one of them by a synonym: the asked shape comes back and the other does not;
    asked for a shape that is not there, nothing comes back. A prompt-blind model gets about half of the first right
    and none of the second; the committed one gets nearly all (10 scenes, so one miss is allowed)."""
    rng = np.random.default_rng(5)
    picked = absent = 0
    for _ in range(10):
        image, shapes = S.make_scene(rng, shapes=[("green", "triangle"), ("yellow", "square")])
        data = _png(image)
        found = S.run_pipeline(shapes_pipeline, data, "green pyramid")
        picked += (
            bool(len(found.xyxy))
            and S.box_iou(found.xyxy, shapes[0].xyxy).max() >= 0.5
            and S.box_iou(found.xyxy, shapes[1].xyxy).max() < 0.5
        )
        absent += len(S.run_pipeline(shapes_pipeline, data, "blue ball").xyxy) == 0
    assert picked >= 9 and absent >= 9, (picked, absent)


def test_detector_recall_and_precision(shapes_pipeline):
    rng = np.random.default_rng(2024)
    hits = asked = found = 0
    for _ in range(SCENES):
        image, shapes = S.make_scene(rng)
        prompt = S.make_prompt(rng, shapes)
        result = S.run_pipeline(shapes_pipeline, _png(image), prompt.text)
        h, a, f = S.match_detections(shapes, prompt, result.xyxy, result.prompt_phrases, result.scores)
        hits, asked, found = hits + h, asked + a, found + f
        assert not any("[SEP]" in p or "[CLS]" in p or p.startswith("##") for p in result.phrases), result.phrases
    recall, precision = hits / asked, hits / max(found, 1)
    assert recall >= MIN_RECALL and precision >= MIN_PRECISION, (recall, precision)


@pytest.mark.parametrize(
    "size",
    [S.SHAPES_SCENE_SIZE] + [pytest.param(size, marks=SQUASHED) for size in SCENE_SIZES.values()],
    ids=["square", *SCENE_SIZES],
)
def test_boxes_fit_the_shapes_on_scenes_of_every_aspect_ratio(shapes_pipeline, size):
    """On non-square scenes the right boxes fit their shapes (median IoU >= 0.9), and recall holds: a detector
    that learned boxes only on square scenes returns them squashed by the aspect ratio (median 0.76 on 4:3)."""
    rng = np.random.default_rng(77)
    right: list[float] = []
    asked = 0
    for _ in range(12):
        image, shapes = S.make_scene(rng, size=size)
        prompt = S.make_prompt(rng, shapes)
        result = S.run_pipeline(shapes_pipeline, _png(image), prompt.text)
        right += S.right_box_ious(shapes, prompt, result.xyxy, result.prompt_phrases, result.scores)
        asked += sum(t >= 0 for t in prompt.targets)
    assert len(right) >= MIN_RECALL * asked, (len(right), asked)
    assert np.median(right) >= MIN_MEDIAN_BOX_IOU, sorted(np.round(right, 2))


@pytest.mark.xfail(
    strict=True,
    reason="the committed toy detector squashes the demo examples' boxes: IoU 0.72-0.82, corners 4-10.6 px off "
    "(issue 23 item 8)",
)
def test_the_demo_examples_boxes_sit_on_their_shapes(shapes_pipeline, tmp_path):
    """What a new user sees first (``python app.py --demo``'s example scenes, 320x240): every shape gets a box under
    its name whose corners are within a few pixels of the shape's; a squashed box is 6-10 px off."""
    from pipeline import Options, load_image
    from pipeline.testing import demo

    for (path, prompt), seed in zip(demo.demo_examples(tmp_path), demo.EXAMPLE_SEEDS):
        _, shapes = S.make_scene(np.random.default_rng(seed), size=(320, 240), shapes=3, min_size=0.25)
        result = shapes_pipeline(load_image(path), prompt, Options())
        for shape in shapes:
            offsets = [
                float(np.abs(np.asarray(box) - shape.xyxy).max())
                for box, label in zip(result.xyxy, result.labels)
                if label == shape.name
            ]
            assert offsets and min(offsets) <= MAX_DEMO_BOX_OFFSET, (seed, shape.name, offsets)


def test_sam_masks_from_a_box_and_from_a_click_through_the_product(shapes_pipeline):
    """Refinement's right answer: the product's Segmenter.decode, given a shape's box or one click on it (batched,
    from one cached embedding per scene), returns that shape's mask."""
    from pipeline import MaskPrompt, load_image

    segmenter = shapes_pipeline.segmenters.get(S.SHAPES_SEGMENTER)
    rng = np.random.default_rng(99)
    box_ious, point_ious = [], []
    for _ in range(25):
        image, shapes = S.make_scene(rng)
        prompts = []
        for shape in shapes:
            ys, xs = np.nonzero(shape.mask)
            k = int(np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2))  # the shape's most central pixel
            prompts += [MaskPrompt.from_box(shape.xyxy), MaskPrompt(points=((xs[k], ys[k]),), positive=(True,))]
        masks = segmenter.decode(load_image(_png(image)), prompts)
        for shape, from_box, from_click in zip(shapes, masks[::2], masks[1::2]):
            box_ious.append(S.mask_iou(from_box, shape.mask))
            point_ious.append(S.mask_iou(from_click, shape.mask))
    assert np.mean(box_ious) >= MIN_MASK_IOU_BOX, np.mean(box_ious)
    assert np.mean(point_ious) >= MIN_MASK_IOU_POINT, np.mean(point_ious)


def _ball_and_box_scene(seed: int = 3, size: tuple[int, int] = S.SHAPES_SCENE_SIZE):
    """A blue circle and a red square (square scene: on 320x240 the committed detector's boxes are squashed)."""
    return S.make_scene(np.random.default_rng(seed), size=size, shapes=[("blue", "circle"), ("red", "square")])


def _on_the_right_shapes(shapes, xyxy, labels) -> None:
    for shape, label in zip(shapes, ["ball", "box"]):
        ious = S.box_iou(shape.xyxy, np.asarray(xyxy).reshape(-1, 4))[0] if len(xyxy) else np.zeros(0)
        assert any(iou >= MIN_BOX_IOU and found == label for iou, found in zip(ious, labels)), (
            shape.name,
            xyxy,
            labels,
        )


def test_the_cli_labels_the_right_shapes_and_masks_them(tmp_path, monkeypatch):
    import json

    from pipeline.__main__ import main

    S.register_shapes_sam()
    monkeypatch.setenv("GROUNDLABEL_INPUT_SIZE", str(S.SHAPES_INPUT_SIZE))  # the toy detector's (tests set 320)
    image, shapes = _ball_and_box_scene()
    image.save(tmp_path / "scene.png")
    code = main(
        [
            str(tmp_path / "scene.png"),
            "--prompt",
            "blue circle:ball. red square:box",
            "--detector",
            str(S.shapes_detector_dir()),
            "--masks",
            S.SHAPES_SEGMENTER,
            "--checkpoint",
            str(S.shapes_sam_checkpoint()),
            "--box-threshold",
            str(S.SHAPES_BOX_THRESHOLD),
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    found = json.loads((tmp_path / "out" / "scene.groundlabel.json").read_text())["detections"]
    _on_the_right_shapes(shapes, [d["box_xyxy"] for d in found], [d["label"] for d in found])
    for shape, label in zip(shapes, ["ball", "box"]):  # its mask covers the shape: its area, give or take 20 %
        best = max((d for d in found if d["label"] == label), key=lambda d: d["score"])
        assert abs(best["mask_area"] - shape.mask.sum()) < 0.2 * shape.mask.sum(), (label, best["mask_area"])


SHAPES_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <TextArea name="prompt" toName="image" editable="true" rows="2" maxSubmissions="1" showSubmitButton="true"/>
  <RectangleLabels name="label" toName="image">
    <Label value="ball" background="blue"/><Label value="box" background="red"/>
  </RectangleLabels>
  <BrushLabels name="mask" toName="image">
    <Label value="ball" background="blue"/><Label value="box" background="red"/>
  </BrushLabels>
</View>"""


def test_predict_puts_each_rectangle_and_brush_mask_on_its_shape_in_label_studio(
    label_studio, shapes_pipeline, tmp_path
):
    from sync import BackendSettings, box_to_pixels, rle_to_mask
    from tests.labelstudio import interactive_answer

    image, shapes = _ball_and_box_scene()
    settings = BackendSettings(
        box_threshold=S.SHAPES_BOX_THRESHOLD,
        text_threshold=S.SHAPES_TEXT_THRESHOLD,
        segmenter=S.SHAPES_SEGMENTER,
        state_dir=tmp_path,
    )
    answer = interactive_answer(
        label_studio, shapes_pipeline, settings, _png(image), "blue circle:ball. red square:box", SHAPES_CONFIG
    )
    boxes = [r for r in answer["result"] if r["type"] == "rectanglelabels"]
    brushes = [r for r in answer["result"] if r["type"] == "brushlabels"]
    _on_the_right_shapes(shapes, [box_to_pixels(r) for r in boxes], [r["value"]["rectanglelabels"][0] for r in boxes])
    for shape, label in zip(shapes, ["ball", "box"]):  # Label Studio's own decoder reads back the shape's pixels
        best = max(S.mask_iou(rle_to_mask(r), shape.mask) for r in brushes if r["value"]["brushlabels"] == [label])
        assert best >= 0.8, (label, best)


def test_an_exif_rotated_scene_puts_the_boxes_on_the_shapes_in_the_upright_frame(shapes_pipeline):
    import io

    from PIL import Image

    image, shapes = _ball_and_box_scene()
    stored = image.transpose(Image.Transpose.ROTATE_90)  # as a camera held sideways stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to show it upright, i.e. back to `image`
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=95, exif=exif)
    result = S.run_pipeline(shapes_pipeline, buffer.getvalue(), "blue circle:ball. red square:box")
    assert (result.width, result.height) == image.size
    _on_the_right_shapes(shapes, result.xyxy, result.labels)


def test_the_text_threshold_picks_a_boxs_words_but_never_its_label(shapes_pipeline):
    """docs: a box's label comes from its prompt phrase whatever the text threshold; the text threshold only decides
    which of that phrase's words are shown (all at 0, none at 1), and re-filtering runs no model."""
    from pipeline import Options
    from tests.counting import count_calls

    image, _ = _ball_and_box_scene()
    data, prompt = _png(image), "blue circle:ball. red square:box"
    every_word = shapes_pipeline(data, prompt, Options(S.SHAPES_BOX_THRESHOLD, 0.0))
    with count_calls(shapes_pipeline.detector.model) as forwards:
        results = [shapes_pipeline(data, prompt, Options(S.SHAPES_BOX_THRESHOLD, t)) for t in (0.25, 0.5, 0.75, 1.0)]
    assert forwards.count == 0
    assert every_word.phrases == every_word.prompt_phrases and set(every_word.labels) == {"ball", "box"}
    for result in results:
        assert result.labels == every_word.labels and result.prompt_phrases == every_word.prompt_phrases
        for shown, phrase in zip(result.phrases, result.prompt_phrases):
            assert set(shown.split()) <= set(phrase.split())
    assert all(phrase == "" for phrase in results[-1].phrases)
