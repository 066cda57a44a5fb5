"""The pipeline's stages and values: result columns, options, shared detector runs, size-grouped batches, and one
decode API for boxes and clicks."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pipeline import DetectionResult, MaskPrompt, Options, SettingsError, load_image, model_version
from pipeline.registry import resolve_detector
from pipeline.testing.models import load_tiny_pipeline
from tests.counting import count_calls

PROMPT = "brown dog. possum on a fence"


@pytest.fixture
def fresh(model_paths):
    return load_tiny_pipeline(*model_paths)


def result_of(n: int, masks: bool = True) -> DetectionResult:
    return DetectionResult(
        width=8,
        height=6,
        xyxy=np.arange(4 * n, dtype=np.float32).reshape(n, 4),
        scores=np.linspace(0.1, 0.9, n),
        phrases=[f"p{i}" for i in range(n)],
        prompt_phrases=[f"p{i}" for i in range(n)],
        labels=[f"l{i}" for i in range(n)],
        masks=np.zeros((n, 6, 8), bool) if masks else None,
    )


def test_detection_result_refuses_columns_of_different_lengths():
    good = result_of(3)
    with pytest.raises(ValueError, match="xyxy has 3 rows, scores 2"):
        DetectionResult(**{**good.__dict__, "scores": good.scores[:2]})
    with pytest.raises(ValueError, match="labels 4"):
        DetectionResult(**{**good.__dict__, "labels": good.labels + ["x"]})
    with pytest.raises(ValueError, match=r"masks must be \(n, height, width\)"):
        DetectionResult(**{**good.__dict__, "masks": np.zeros((3, 6, 7), bool)})


def test_detection_result_filters_by_boolean_mask_slice_and_index_array():
    result = result_of(4)
    high = result[result.scores > 0.5]
    assert high.phrases == ["p2", "p3"] and np.array_equal(high.xyxy, result.xyxy[2:])
    assert high.masks.shape == (2, 6, 8)
    assert result[1:3].labels == ["l1", "l2"]
    assert result[[3, 0]].phrases == ["p3", "p0"] and np.allclose(result[[3, 0]].scores, result.scores[[3, 0]])
    assert len(result[result.scores > 2]) == 0 and result[result.scores > 2].xyxy.shape == (0, 4)
    assert result.with_labels(["a", "b", "c", "d"]).labels == ["a", "b", "c", "d"]
    with pytest.raises(IndexError):
        result[np.array([True, False])]


def test_options_are_checked_and_name_the_version():
    with pytest.raises(SettingsError, match="Box threshold must be a number from 0 to 1"):
        Options(box_threshold=1.5)
    with pytest.raises(SettingsError, match="Unknown segmenter 'nope'"):
        Options(segmenter="nope")
    assert Options(segmenter="vit_t").segmenter == "mobile_sam"
    assert (
        model_version(resolve_detector("IDEA-Research/grounding-dino-tiny"), Options(0.3, 0.25, "mobile_sam"))
        == "groundlabel-grounding-dino-tiny+mobile_sam-box0.3-text0.25"
    )


def test_two_identical_concurrent_requests_run_the_detector_once(fresh, photo):
    results = [None, None]

    def ask(slot: int) -> None:
        results[slot] = fresh(photo, PROMPT, Options(0.3))

    with count_calls(fresh.detector.model, delay=0.5) as forwards:
        threads = [threading.Thread(target=ask, args=(slot,)) for slot in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert forwards.count == 1
    assert np.array_equal(results[0].xyxy, results[1].xyxy) and results[0].phrases == results[1].phrases


@pytest.mark.slow  # many model runs: the slow tier (tests/conftest.py)
def test_images_of_different_processed_sizes_never_share_a_forward(fresh, model_paths, photo):
    wider = np.ascontiguousarray(np.pad(photo, ((0, 0), (0, 1), (0, 0))))  # 1 px more: padding would move boxes
    same = np.ascontiguousarray(photo[::-1])
    with count_calls(fresh.detector.model) as forwards:
        batched = fresh.batch([photo, wider, same], PROMPT, Options(0.3))
    assert forwards.count == 2  # photo + same together, wider alone
    single = load_tiny_pipeline(model_paths[0])
    for result, image in zip(batched, [photo, wider, same]):
        alone = single(image, PROMPT, Options(0.3))
        assert np.allclose(result.xyxy, alone.xyxy, atol=1e-3) and result.phrases == alone.phrases


@pytest.mark.slow  # many model runs: the slow tier (tests/conftest.py)
def test_decode_batched_equals_the_loop_for_boxes_and_clicks(fresh, photo):
    segmenter = fresh.segmenters.get("sam_tiny_test")
    image = load_image(photo)
    prompts = [
        MaskPrompt((10, 20, 200, 220)),
        MaskPrompt((300, 100, 630, 470)),
        MaskPrompt(points=((100, 100),), positive=(True,)),
        MaskPrompt(points=((400, 300), (420, 320)), positive=(True, False)),
        MaskPrompt((300, 100, 630, 470), points=((400, 300),), positive=(False,)),
    ]
    looped = segmenter.decode(image, prompts, batched=False)
    segmenter._masks.clear()
    with count_calls(segmenter.predictor.model.mask_decoder) as decoder:
        batched = segmenter.decode(image, prompts, batched=True)
    assert decoder.count == 4  # one call per prompt shape: box, one point, two points, box + point
    assert looped.shape == (5, 480, 640) and looped.any(axis=(1, 2)).all()
    agreement = [(a == b).mean() for a, b in zip(looped, batched)]
    assert min(agreement) > 0.999, agreement


def test_a_click_on_a_cached_image_runs_only_the_mask_decoder(fresh, photo):
    segmenter = fresh.segmenters.get("sam_tiny_test")
    image = load_image(photo)
    segmenter.decode(image, [MaskPrompt((10, 20, 200, 220))])
    model = segmenter.predictor.model
    with count_calls(model.image_encoder) as encoder, count_calls(model.mask_decoder) as decoder:
        click = MaskPrompt(points=((50, 60),), positive=(True,))
        first = segmenter.decode(image, [click])
        again = segmenter.decode(image, [click])
    assert (encoder.count, decoder.count) == (0, 1)
    assert np.array_equal(first, again)
    with pytest.raises(ValueError, match="needs a box, points, or both"):
        MaskPrompt()
    with pytest.raises(ValueError, match="2 points but 1"):
        MaskPrompt(points=((1, 2), (3, 4)), positive=(True,))
