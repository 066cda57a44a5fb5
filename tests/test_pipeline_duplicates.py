"""Class-aware duplicate suppression (NMS) on the committed toy models' output: re-applied from cached raw outputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import supervision as sv

from pipeline import DEFAULT_NMS_THRESHOLD, DetectionResult, Options, SettingsError, model_version
from pipeline.engine import suppress_duplicates
from pipeline.registry import resolve_detector
from pipeline.testing import shapes as S
from tests.counting import count_calls

SCENES = 40


@pytest.fixture(scope="module")
def shapes_pipeline():
    return S.load_shapes_pipeline()


@pytest.fixture(scope="module")
def scenes():
    rng = np.random.default_rng(5)  # 60 of these scenes: 7 duplicates of 129 boxes without NMS
    out = []
    for _ in range(SCENES):
        image, shapes = S.make_scene(rng)
        out.append((image, S.make_prompt(rng, shapes).text))
    return out


def _options(nms: float) -> Options:
    return Options(S.SHAPES_BOX_THRESHOLD, S.SHAPES_TEXT_THRESHOLD, nms_threshold=nms)


def _worst_overlap(result: DetectionResult) -> float:
    """The largest IoU between two kept boxes of one label."""
    names = result.display_labels()
    pairs = [(i, j) for i, j in itertools.combinations(range(len(result)), 2) if names[i] == names[j]]
    return max((float(sv.box_iou_batch(result.xyxy[[i]], result.xyxy[[j]])[0, 0]) for i, j in pairs), default=0.0)


@pytest.mark.slow  # many model runs: the slow tier (tests/conftest.py)
def test_no_two_kept_boxes_of_one_label_overlap_above_the_nms_threshold(shapes_pipeline, scenes):
    raw = [shapes_pipeline(image, prompt, _options(1.0)) for image, prompt in scenes]
    assert max(_worst_overlap(r) for r in raw) > 0.9  # the toy detector does make duplicates
    for nms in (DEFAULT_NMS_THRESHOLD, 0.3):
        kept = [shapes_pipeline(image, prompt, _options(nms)) for image, prompt in scenes]
        assert max(_worst_overlap(r) for r in kept) <= nms
        assert sum(map(len, kept)) < sum(map(len, raw))


def test_changing_the_nms_threshold_runs_no_model(shapes_pipeline, scenes):
    image, prompt = scenes[0]
    shapes_pipeline(image, prompt, _options(1.0))
    with count_calls(shapes_pipeline.detector.model) as forwards:
        for nms in (0.5, 0.2, 0.9, 1.0):
            shapes_pipeline(image, prompt, _options(nms))
    assert forwards.count == 0


def test_boxes_of_different_labels_never_suppress_each_other():
    result = DetectionResult(
        width=10,
        height=10,
        xyxy=[[0, 0, 5, 5], [0, 0, 5, 5], [0, 0, 5, 5]],
        scores=[0.9, 0.8, 0.7],
        phrases=["cat", "cat", "dog"],
        prompt_phrases=["cat", "cat", "dog"],
        labels=["cat", "cat", "dog"],
    )
    assert suppress_duplicates(result, 0.5).labels == ["cat", "dog"]
    assert len(suppress_duplicates(result, 1.0)) == 3


def test_the_nms_threshold_and_the_mask_cap_name_another_version():
    spec = resolve_detector("grounding-dino-tiny")
    plain = model_version(spec, Options())
    assert plain == "groundlabel-grounding-dino-tiny-box0.35-text0.25"  # the defaults keep versions short
    assert model_version(spec, Options(nms_threshold=0.7)) == plain + "-nms0.7"
    assert model_version(spec, Options(segmenter="mobile_sam", max_masks=20)).endswith("-m20")
    assert model_version(spec, Options(max_masks=20)) == plain  # without masks the cap shapes nothing
    with pytest.raises(SettingsError, match="NMS threshold"):
        Options(nms_threshold=1.5)
