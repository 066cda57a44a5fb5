"""MM-Grounding-DINO (registered as mm-grounding-dino-tiny) through the product's loader, pipeline and ML backend."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import DETECTORS, GroundingPipeline, Options, PipelineSettings, SettingsError
from pipeline.detector import GroundingDinoDetector
from pipeline.testing.models import TEST_INPUT_SIZE, save_grounding_dino
from tests.counting import count_calls

PROMPT = "brown dog. possum on a fence"


@pytest.fixture(scope="module")
def mm_dir(tmp_path_factory):
    return save_grounding_dino(tmp_path_factory.mktemp("mm") / "mm-gdino", family="mm-grounding-dino")


@pytest.fixture(scope="module")
def mm_pipeline(mm_dir):
    return GroundingPipeline.from_settings(
        PipelineSettings(detector=str(mm_dir), device="cpu", input_size=TEST_INPUT_SIZE, offline=True)
    )


def test_mm_grounding_dino_is_registered_with_its_hub_id():
    spec = DETECTORS["mm-grounding-dino-tiny"]
    assert spec.source == "openmmlab-community/mm_grounding_dino_tiny_o365v1_goldg_v3det"
    assert spec.licence == "Apache-2.0"


def test_mm_grounding_dino_boxes_carry_prompt_phrases_and_rethreshold_without_a_model_run(mm_pipeline, photo):
    assert type(mm_pipeline.detector.model).__name__ == "MMGroundingDinoForObjectDetection"
    everything = mm_pipeline(photo, PROMPT, Options(0.0, 0.0))
    assert len(everything) == 20  # the tiny model's 20 queries
    assert set(everything.prompt_phrases) <= {"brown dog", "possum on a fence"}
    threshold = float(np.median(everything.scores))
    with count_calls(mm_pipeline.detector.model) as forwards:
        fewer = mm_pipeline(photo, PROMPT, Options(threshold, 0.0))
    assert forwards.count == 0
    kept = everything.scores > threshold
    assert 0 < len(fewer) < len(everything)
    np.testing.assert_allclose(fewer.xyxy, everything.xyxy[kept])
    assert fewer.prompt_phrases == [p for p, keep in zip(everything.prompt_phrases, kept) if keep]


def test_mm_grounding_dino_answers_label_studio_with_rectangles_of_the_projects_labels(
    label_studio, mm_pipeline, tmp_path
):
    from sync import BackendSettings, box_to_pixels
    from tests.labelstudio import interactive_answer, png

    image = png(96, 72, seed=5)
    settings = BackendSettings(box_threshold=0.0, text_threshold=0.0, segmenter=None, state_dir=tmp_path)
    answer = interactive_answer(label_studio, mm_pipeline, settings, image, "cats")
    expected = mm_pipeline(image, "cats", Options(0.0, 0.0))
    boxes = [r for r in answer["result"] if r["type"] == "rectanglelabels"]
    assert len(boxes) == len(expected) == 20
    assert {r["value"]["rectanglelabels"][0] for r in boxes} == {"cats"}
    for region, xyxy in zip(boxes, expected.xyxy):
        np.testing.assert_allclose(box_to_pixels(region), np.clip(xyxy, 0, [96, 72, 96, 72]), atol=1e-3)


def test_the_openvino_runtime_refuses_mm_grounding_dino_with_a_sentence(mm_dir, tmp_path):
    pytest.importorskip("openvino")
    with pytest.raises(SettingsError, match="Grounding DINO models only"):
        GroundingDinoDetector(str(mm_dir), device="cpu", offline=True, runtime="openvino", cache_dir=tmp_path)


def test_a_request_can_name_another_detector_which_loads_once_beside_the_default(pipeline, mm_dir, photo, tmp_path):
    chosen = Options(0.0, 0.0, detector=str(mm_dir))
    with count_calls(pipeline.detector.model) as default_forwards:
        result = pipeline(photo, PROMPT, chosen)
    assert default_forwards.count == 0
    other = pipeline.detector_for(chosen)
    assert other is not pipeline.detector and pipeline.detector_for(chosen) is other  # loaded once
    assert (
        result.model_version.startswith("groundlabel-mm-gdino-")
        and result.model_version != pipeline(photo, PROMPT, Options(0.0, 0.0)).model_version
    )
    with count_calls(other.model) as forwards:
        again = pipeline(photo, PROMPT, Options(0.5, 0.0, detector=str(mm_dir)))  # re-threshold: cached
    assert forwards.count == 0 and len(again) == int((result.scores > 0.5).sum())
    third = save_grounding_dino(tmp_path / "third", seed=7)
    pipeline(photo, PROMPT, Options(0.3, 0.0, detector=str(third)))
    assert pipeline.detector_for(Options(detector=str(third))) is not other  # the previous other one was dropped
    assert pipeline.detector_for(Options()) is pipeline.detector
