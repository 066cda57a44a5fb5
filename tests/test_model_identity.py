"""One identity per model: every name of a detector (short name, Hub id, its local copy) resolves, at the settings
edge, to one spec; the default detector's GROUNDLABEL_<NAME>_CHECKPOINT is used without contacting the Hub; and a
detector family is one registry entry that the settings, the loader, the pipeline and model_version all read."""

from __future__ import annotations

from dataclasses import replace

import pytest

import pipeline.detector
import pipeline.weights
from pipeline import DETECTORS, GroundingPipeline, LazyPipeline, Options, PipelineSettings, model_version, parse_prompt
from pipeline.detector import GroundingDinoDetector
from pipeline.families import reads_text_threshold
from pipeline.options import prompt_hash
from pipeline.registry import FAMILIES, DetectorSpec, Family, resolve_detector
from pipeline.testing.models import TEST_INPUT_SIZE

HUB_ID = "IDEA-Research/grounding-dino-tiny"


@pytest.fixture
def hub_and_sources(monkeypatch):
    """Counts Hub contacts (the download path's reachability check) and records what the detector loader opens."""
    calls = {"hub": [], "sources": []}

    def no_hub(model_id, *args, **kwargs):
        calls["hub"].append(model_id)
        raise pipeline.weights.WeightsError(f"test: no Hub contact allowed ({model_id})")

    def recording(model_id, offline, *loaders):
        calls["sources"].append(model_id)
        return load(model_id, offline, *loaders)

    load = pipeline.weights.load_pretrained
    monkeypatch.setattr(pipeline.weights, "check_hub", no_hub)
    monkeypatch.setattr(pipeline.detector, "load_pretrained", recording)
    return calls


def test_the_default_detectors_checkpoint_variable_is_used_and_the_hub_is_not_contacted(model_paths, hub_and_sources):
    local = str(model_paths[0])
    env = {  # downloads allowed: only the variable keeps the Hub out
        "GROUNDLABEL_GROUNDING_DINO_TINY_CHECKPOINT": local,
        "GROUNDLABEL_DEVICE": "cpu",
        "GROUNDLABEL_INPUT_SIZE": str(TEST_INPUT_SIZE),
    }
    lazy = LazyPipeline(PipelineSettings.from_env(env))

    loaded = lazy.get()

    assert hub_and_sources == {"hub": [], "sources": [local]}
    assert loaded.detector.model_id == local
    status = lazy.status()
    assert (status["detector"], status["source"]) == ("grounding-dino-tiny", local)
    # its Hub id names the same model, so a request naming it loads nothing more and carries the same version
    assert loaded.detector_for(Options(detector=HUB_ID)) is loaded.detector
    assert loaded.model_version(Options(detector=HUB_ID)) == loaded.model_version(Options())
    assert hub_and_sources["sources"] == [local]


def test_every_name_of_a_model_resolves_to_one_spec(model_paths):
    local = str(model_paths[0])
    settings = PipelineSettings(detector=HUB_ID, checkpoints={"grounding-dino-tiny": local})
    spec = settings.detector_spec
    assert spec == settings.resolve("grounding-dino-tiny") == settings.resolve(local) == settings.resolve(HUB_ID)
    assert (spec.name, spec.load_from, spec.licence) == ("grounding-dino-tiny", local, "Apache-2.0")
    assert PipelineSettings().detector_spec == DETECTORS["grounding-dino-tiny"]  # no local copy: the Hub id
    # a directory of its own is its own model: named by its last part, its family read from its config.json
    assert resolve_detector(local + "/") == DetectorSpec(model_paths[0].name, local + "/", family="grounding-dino")
    assert model_version(settings.resolve(local), Options(0.3)) == "groundlabel-grounding-dino-tiny-box0.3-text0.25"


class ToyDetector(GroundingDinoDetector):
    """A stand-in adapter for a family added by one registry entry."""


def test_a_new_family_is_one_registry_entry_that_settings_loader_and_versions_read(
    model_paths, photo, monkeypatch, hub_and_sources
):
    family = Family(
        "toy-family",
        "Toy",
        f"{__name__}:ToyDetector",
        "pipeline.testing.models:save_grounding_dino",
        makes_masks=True,
    )
    spec = DetectorSpec("toy-detector", "nobody/toy-detector", "MIT", family.name)
    monkeypatch.setitem(FAMILIES, family.name, family)
    monkeypatch.setitem(DETECTORS, spec.name, spec)
    local = str(model_paths[0])
    settings = PipelineSettings.from_env(
        {
            spec.env_var: local,
            "GROUNDLABEL_DETECTOR": spec.source,
            "GROUNDLABEL_DEVICE": "cpu",
            "GROUNDLABEL_OFFLINE": "1",
            "GROUNDLABEL_INPUT_SIZE": str(TEST_INPUT_SIZE),
        }
    )

    loaded = GroundingPipeline.from_settings(settings)
    result = loaded(photo, "cats", Options(0.0, 0.0, segmenter="mobile_sam"))

    assert type(loaded.detector) is ToyDetector and hub_and_sources == {"hub": [], "sources": [local]}
    assert result.model_version == "groundlabel-toy-detector+masks-box0-text0-p" + prompt_hash(parse_prompt("cats"))
    assert not reads_text_threshold(spec.source) and LazyPipeline(settings).status()["reads_text_threshold"] is False


def test_the_mask_cap_setting_names_one_version_in_setup_and_in_predictions(pipeline, tmp_path, monkeypatch):
    from sync import BackendSettings
    from sync.backend import MLBackend

    masks = Options(segmenter="mobile_sam")
    monkeypatch.setattr(pipeline, "settings", replace(pipeline.settings, max_masks=20))  # GROUNDLABEL_MAX_MASKS=20
    backend = MLBackend(LazyPipeline(pipeline.settings), BackendSettings(state_dir=tmp_path))  # nothing loaded

    assert pipeline.model_version(masks).endswith("-m20") and backend.model_version(masks).endswith("-m20")
    assert pipeline.model_version(masks) == backend.model_version(masks)
    assert pipeline.model_version(replace(masks, max_masks=5)).endswith("-m5")  # the request's own cap wins
    assert "-m" not in model_version(pipeline.spec_for(masks), replace(masks, max_masks=100))  # the default: short
