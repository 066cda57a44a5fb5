"""GROUNDLABEL_RUNTIME=openvino: the detector converted once, cached on disk, giving torch's outputs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from pipeline import GroundingPipeline, Options, PipelineSettings, SettingsError, load_image, parse_prompt
from pipeline.detector import GroundingDinoDetector
from pipeline.testing.models import TEST_INPUT_SIZE

openvino = pytest.importorskip("openvino")
PROMPT = "brown dog. possum on a fence"


def detector(model_paths, runtime: str, cache_dir) -> GroundingDinoDetector:
    return GroundingDinoDetector(
        str(model_paths[0]),
        device="cpu",
        input_size=TEST_INPUT_SIZE,
        offline=True,
        runtime=runtime,
        cache_dir=cache_dir,
    )


def count_conversions(monkeypatch) -> list:
    calls = []
    convert = openvino.convert_model
    monkeypatch.setattr(openvino, "convert_model", lambda *a, **k: calls.append(1) or convert(*a, **k))
    return calls


def test_openvino_gives_torchs_raw_outputs_for_any_image_size_batch_and_prompt(model_paths, photo, tmp_path):
    torch_detector = detector(model_paths, "torch", tmp_path)
    ov_detector = detector(model_paths, "openvino", tmp_path)
    images = [load_image(photo), load_image(photo[:300, :500].copy()), load_image(photo[::-1, ::-1].copy())]
    for prompt in (PROMPT, "cat", "a possum on a fence. brown dog. person with an umbrella"):
        parsed = parse_prompt(prompt)
        for expected, got in zip(torch_detector.raw(images, parsed), ov_detector.raw(images, parsed)):
            finite = torch.isfinite(expected.logits)
            assert torch.equal(finite, torch.isfinite(got.logits))
            assert (expected.logits[finite] - got.logits[finite]).abs().max() < 1e-3
            assert (expected.boxes - got.boxes).abs().max() < 1e-4


def test_openvino_pipeline_gives_the_torch_pipelines_boxes_and_labels(model_paths, photo, tmp_path):
    settings = PipelineSettings(
        detector=str(model_paths[0]), device="cpu", input_size=TEST_INPUT_SIZE, offline=True, cache_dir=tmp_path
    )
    expected = GroundingPipeline.from_settings(settings)(photo, PROMPT, Options(0.2, 0.2))
    got = GroundingPipeline.from_settings(replace(settings, runtime="openvino"))(photo, PROMPT, Options(0.2, 0.2))
    assert len(expected) > 0
    assert np.abs(expected.xyxy - got.xyxy).max() < 0.05 and np.abs(expected.scores - got.scores).max() < 1e-4
    assert got.labels == expected.labels and got.phrases == expected.phrases


def test_the_conversion_runs_once_and_later_detectors_load_it_from_the_cache(model_paths, photo, tmp_path, monkeypatch):
    conversions = count_conversions(monkeypatch)
    first = detector(model_paths, "openvino", tmp_path)
    first.raw([load_image(photo)], parse_prompt(PROMPT))
    first.raw([load_image(photo[::-1].copy())], parse_prompt("cat. a possum on a fence"))  # same size, new prompt
    assert len(conversions) == 1 and len(list((tmp_path / "openvino").glob("*.xml"))) == 1
    first.raw([load_image(photo[:200].copy())], parse_prompt("cat"))  # a new processed size: its own graph
    assert len(conversions) == 2 and len(list((tmp_path / "openvino").glob("*.xml"))) == 2
    second = detector(model_paths, "openvino", tmp_path)
    second.raw([load_image(photo[:, ::-1].copy()), load_image(photo[:200, ::-1].copy())], parse_prompt(PROMPT))
    assert len(conversions) == 2  # a new process (here: a new detector) loads both from disk


def test_a_changed_model_is_converted_again(model_paths, photo, tmp_path, monkeypatch):
    conversions = count_conversions(monkeypatch)
    first = detector(model_paths, "openvino", tmp_path)
    first.raw([load_image(photo)], parse_prompt(PROMPT))
    changed = detector(model_paths, "openvino", tmp_path)
    with torch.no_grad():
        next(changed.model.parameters()).add_(0.01)
    changed._openvino = type(changed._openvino)(changed.model, tmp_path)
    changed.raw([load_image(photo)], parse_prompt(PROMPT))
    assert len(conversions) == 2 and len(list((tmp_path / "openvino").glob("*.xml"))) == 2
    assert not list((tmp_path / "openvino").glob("*partial*"))


def test_runtime_settings_are_checked_with_a_sentence(model_paths, tmp_path):
    with pytest.raises(SettingsError, match="Unknown runtime 'tensorrt'"):
        detector(model_paths, "tensorrt", tmp_path)
    with pytest.raises(SettingsError, match="float32"):
        GroundingDinoDetector(str(model_paths[0]), device="cpu", dtype="bfloat16", offline=True, runtime="openvino")
    assert PipelineSettings.from_env({"GROUNDLABEL_RUNTIME": "OpenVINO"}).runtime == "openvino"
    assert PipelineSettings.from_env({}).runtime == "torch"
