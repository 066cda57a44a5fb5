"""SAM 2.1 and SAM-HQ through transformers behind the segmenter interface: reference masks, the embedding cache, the
pipeline, the CLI, Label Studio, and the memory budget of loaded segmenters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from pipeline import (
    GroundingPipeline,
    MaskPrompt,
    Options,
    PipelineSettings,
    SegmenterPool,
    WeightsError,
    load_image,
    segmenter_spec,
)
from pipeline.testing.models import TEST_INPUT_SIZE, save_sam2, save_sam_hq
from tests.counting import count_calls

NAME = "sam2_1_hiera_tiny"
PROMPTS = [
    MaskPrompt.from_box([100, 80, 300, 260]),
    MaskPrompt.from_box([10, 300, 620, 470]),
    MaskPrompt(points=((200, 150),), positive=(True,)),
    MaskPrompt(points=((50, 60), (400, 100)), positive=(True, False)),
    MaskPrompt(box=(300, 100, 600, 400), points=((450, 250), (320, 120)), positive=(True, False)),
]


FAMILIES = {NAME: ("Sam2", save_sam2), "sam_hq_vit_b": ("SamHQ", save_sam_hq)}


@pytest.fixture(scope="module")
def sam2_dir(tmp_path_factory):
    return save_sam2(tmp_path_factory.mktemp("sam2") / NAME)


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory) -> tuple[str, object]:
    """(segmenter name, its saved tiny model's directory), for each transformers family."""
    prefix, save = FAMILIES[request.param]
    return request.param, save(tmp_path_factory.mktemp(prefix) / request.param)


@pytest.fixture
def segmenter(family):
    name, directory = family
    return SegmenterPool(device="cpu", checkpoints={name: str(directory)}, offline=True).get(name)


# transformers' default ``mask_threshold`` (the segmenter's): a pixel is in the mask when its logit is above it.
MASK_THRESHOLD = 0.0
# Two computation orders (another CPU's kernels, a batched call) sum floats differently: a pixel may flip only when
# its logit lies within LOGIT_TOLERANCE of the threshold, in units of the largest |logit| (the tiny random models'
# logits are ~1e-5, so an absolute 1e-4 would excuse every pixel; float32 and float64 runs differ by < 1e-5 of that
# scale), and a score may move by SCORE_TOLERANCE.
LOGIT_TOLERANCE, SCORE_TOLERANCE = 1e-4, 1e-5


def reference(family, image, prompt: MaskPrompt) -> tuple[np.ndarray, float]:
    """transformers' own way, from the image: processor -> full model forward -> the processor's post-processing,
    unthresholded: the upsampled mask logits and the IoU score."""
    name, directory = family
    prefix = FAMILIES[name][0]
    processor = getattr(transformers, f"{prefix}Processor").from_pretrained(directory)
    model = getattr(transformers, f"{prefix}Model").from_pretrained(directory).eval()
    kwargs = {}
    if prompt.box is not None:
        kwargs["input_boxes"] = [[list(prompt.box)]]
    if prompt.points:
        kwargs["input_points"] = [[[list(point) for point in prompt.points]]]
        kwargs["input_labels"] = [[[int(flag) for flag in prompt.positive]]]
    inputs = processor(images=image.pil, return_tensors="pt", **kwargs)
    with torch.inference_mode():
        outputs = model(**inputs, multimask_output=False)
    sizes = [inputs[key] for key in ("original_sizes", "reshaped_input_sizes") if key in inputs]
    logits = processor.post_process_masks(outputs.pred_masks, *sizes, binarize=False)[0][0, 0].numpy()
    return logits, float(outputs.iou_scores[0, 0, 0])


def assert_same_mask(mask: np.ndarray, expected: np.ndarray, logits: np.ndarray) -> None:
    """``mask`` equals ``expected`` on every pixel whose reference logit is not within LOGIT_TOLERANCE (relative to
    the largest |logit|) of the threshold; those near-threshold pixels are few."""
    decided = np.abs(logits - MASK_THRESHOLD) > LOGIT_TOLERANCE * np.abs(logits).max()
    assert decided.mean() > 0.99
    differ = (mask != expected) & decided
    assert not differ.any(), f"{differ.sum()} pixels differ, logits there: {logits[differ][:5]}"


def test_masks_equal_transformers_own_forward_for_boxes_points_and_both(family, segmenter, photo):
    image = load_image(photo)
    masks, scores = segmenter.decode_with_scores(image, PROMPTS)
    assert masks.shape == (len(PROMPTS), 480, 640) and masks.dtype == bool
    for prompt, mask, score in zip(PROMPTS, masks, scores):
        logits, expected_score = reference(family, image, prompt)
        assert_same_mask(mask, logits > MASK_THRESHOLD, logits)
        assert score == pytest.approx(expected_score, abs=SCORE_TOLERANCE)
    assert len({mask.tobytes() for mask in masks}) == len(PROMPTS)  # different prompts, different masks
    flipped = load_image(photo[::-1].copy())
    looped = segmenter.decode(flipped, PROMPTS, batched=False)
    batched = segmenter.decode(flipped, PROMPTS)
    for prompt, one, together in zip(PROMPTS, looped, batched):
        logits, _ = reference(family, flipped, prompt)
        assert_same_mask(one, logits > MASK_THRESHOLD, logits)
        assert_same_mask(together, logits > MASK_THRESHOLD, logits)


def test_new_prompts_on_an_image_run_only_the_decoder_and_repeated_ones_nothing(segmenter, photo):
    image = load_image(photo)
    with count_calls(segmenter.model.vision_encoder) as encoder, count_calls(segmenter.model.mask_decoder) as decoder:
        segmenter.decode(image, PROMPTS[:2])
        assert (encoder.count, decoder.count) == (1, 1)  # two boxes, one batched decoder call
        segmenter.decode(image, PROMPTS[2:])
        assert (encoder.count, decoder.count) == (1, 4)  # three prompt shapes: one call each, no encoder
        segmenter.decode(image, PROMPTS)
        assert (encoder.count, decoder.count) == (1, 4)  # all cached


def test_the_pipeline_masks_detections_with_sam2_and_rethresholds_without_any_model(model_paths, sam2_dir, photo):
    pipeline = GroundingPipeline.from_settings(
        PipelineSettings(
            detector=str(model_paths[0]),
            device="cpu",
            input_size=TEST_INPUT_SIZE,
            offline=True,
            checkpoints={NAME: str(sam2_dir)},
        )
    )
    result = pipeline(photo, "brown dog. possum on a fence", Options(0.2, segmenter="sam2.1"))
    assert len(result) > 0 and result.masks.shape == (len(result), 480, 640)
    segmenter = pipeline.segmenters.get(NAME)
    expected = segmenter.decode(load_image(photo), [MaskPrompt.from_box(box) for box in result.xyxy])
    assert np.array_equal(result.masks, expected)
    with count_calls(pipeline.detector.model) as detector, count_calls(segmenter.model) as sam:
        again = pipeline(photo, "brown dog. possum on a fence", Options(0.3, segmenter=NAME))
    assert (detector.count, sam.count) == (0, 0)
    assert np.array_equal(again.masks, result.masks[result.scores > 0.3])


def test_sam2_without_weights_offline_says_where_to_put_them(tmp_path):
    pool = SegmenterPool(device="cpu", offline=True)
    with pytest.raises(WeightsError) as caught:
        pool.get("sam2_1_hiera_small")
    assert "facebook/sam2.1-hiera-small" in str(caught.value)
    assert segmenter_spec("sam2.1-hiera-small").env_var == "GROUNDLABEL_SAM2_1_HIERA_SMALL_CHECKPOINT"


def test_the_cli_lists_the_models_and_masks_with_sam2_from_its_variable(
    model_paths, sam2_dir, photo, tmp_path, monkeypatch, capsys
):
    import json

    from PIL import Image

    from pipeline.__main__ import main

    assert main(["--models"]) == 0
    listing = capsys.readouterr().out
    assert "sam2_1_hiera_base_plus" in listing and "facebook/sam2.1-hiera-base-plus" in listing
    assert "GROUNDLABEL_SAM2_1_HIERA_TINY_CHECKPOINT (a directory)" in listing
    monkeypatch.setenv("GROUNDLABEL_SAM2_1_HIERA_TINY_CHECKPOINT", str(sam2_dir))
    monkeypatch.setenv("GROUNDLABEL_INPUT_SIZE", str(TEST_INPUT_SIZE))
    monkeypatch.setenv("GROUNDLABEL_OFFLINE", "1")
    Image.fromarray(photo).save(tmp_path / "yard.png")
    code = main(
        [
            str(tmp_path / "yard.png"),
            "--prompt",
            "brown dog. possum",
            "--detector",
            str(model_paths[0]),
            "--masks",
            NAME,
            "--box-threshold",
            "0.3",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    written = json.loads((tmp_path / "out" / "yard.groundlabel.json").read_text())
    assert written["detections"] and all(d["mask_area"] > 0 for d in written["detections"])


def test_sam2_masks_reach_label_studio_as_brush_regions_that_decode_to_its_masks(
    label_studio, pipeline, sam2_dir, tmp_path
):
    from sync import BackendSettings, rle_to_mask
    from tests.labelstudio import interactive_answer, png

    with_sam2 = GroundingPipeline(
        pipeline.detector,
        SegmenterPool(device="cpu", checkpoints={NAME: str(sam2_dir)}, offline=True),
        pipeline.settings,
    )
    settings = BackendSettings(box_threshold=0.2, text_threshold=0.2, segmenter=NAME, state_dir=tmp_path)
    image = png(96, 72, seed=3)
    answer = interactive_answer(label_studio, with_sam2, settings, image, "cats")
    expected = with_sam2(image, "cats", Options(0.2, 0.2, NAME))
    brushes = [r for r in answer["result"] if r["type"] == "brushlabels"]
    assert len(expected) > 0 and len(brushes) == len(expected)
    assert f"+{NAME}-" in answer["model_version"]
    for region, mask in zip(brushes, expected.masks):
        assert region["value"]["brushlabels"] == ["cats"]
        np.testing.assert_array_equal(rle_to_mask(region), mask)


def test_loaded_segmenters_stay_within_the_memory_budget_least_recently_used_unloaded_first(model_paths, sam2_dir):
    checkpoints = {NAME: str(sam2_dir), "sam_tiny_test": str(model_paths[1])}
    sizes = {
        name: SegmenterPool(device="cpu", checkpoints=checkpoints, offline=True).get(name).weight_bytes
        for name in checkpoints
    }
    pool = SegmenterPool(device="cpu", checkpoints=checkpoints, offline=True, memory_budget=max(sizes.values()))
    first = pool.get(NAME)
    assert pool.memory == {NAME: sizes[NAME]}
    pool.get("sam_tiny_test")  # both do not fit: the older one goes
    assert pool.loaded == ["sam_tiny_test"]
    assert pool.get(NAME) is not first  # loaded again when chosen again
    assert pool.loaded == [NAME]
    roomy = SegmenterPool(device="cpu", checkpoints=checkpoints, offline=True, memory_budget=sum(sizes.values()))
    roomy.get(NAME), roomy.get("sam_tiny_test"), roomy.get(NAME)
    assert roomy.loaded == ["sam_tiny_test", NAME]  # least recently used first
    assert PipelineSettings.from_env({"GROUNDLABEL_SEGMENTER_MEMORY_MB": "512"}).segmenter_memory == 512 << 20
