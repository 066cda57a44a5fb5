"""Which detector class runs a model: the registry's family for a registered name or Hub id, else the family its
config.json names, so any Hub id or local directory of a supported family works."""

from __future__ import annotations

import json
from pathlib import Path

from .detector import CachedDetector, GroundingDinoDetector
from .errors import SettingsError
from .registry import detector_source, detector_spec
from .weights import load_pretrained


def _classes() -> dict[str, type[CachedDetector]]:
    from .open_vocab import OmDetTurboDetector, Owlv2Detector
    from .sam3 import Sam3Detector

    return {
        "grounding-dino": GroundingDinoDetector,
        "mm-grounding-dino": GroundingDinoDetector,
        "owlv2": Owlv2Detector,
        "omdet-turbo": OmDetTurboDetector,
        "sam3": Sam3Detector,
    }


def detector_family(model_id: str, offline: bool) -> str:
    """The family (config ``model_type``) of a registered name, Hub id or local directory."""
    spec = detector_spec(model_id)
    if spec is not None:
        return spec.family
    from transformers import AutoConfig

    return load_pretrained(detector_source(model_id), offline, AutoConfig)[0].model_type


def _local_family(model_id: str) -> str | None:
    """The family a registered name stands for, or a local directory's config.json names; None when unknown
    without a download."""
    spec = detector_spec(model_id)
    if spec is not None:
        return spec.family
    config = Path(model_id) / "config.json"
    return json.loads(config.read_text()).get("model_type") if config.is_file() else None


def reads_text_threshold(model_id: str) -> bool:
    """Whether a detector (name, Hub id or local directory) reads a text threshold, without loading it; an unknown
    Hub id is taken for Grounding DINO, which does."""
    family = _local_family(model_id)
    return family not in _classes() or _classes()[family].reads_text_threshold


def makes_masks(model_id: str) -> bool:
    """Whether a detector makes its own masks (SAM 3), without loading it."""
    family = _local_family(model_id)
    return family in _classes() and _classes()[family].makes_masks


def load_detector(
    model_id: str,
    device: str | None = None,
    dtype: str | None = None,
    input_size: int | None = None,
    offline: bool = False,
    runtime: str = "torch",
    cache_dir: Path | None = None,
) -> CachedDetector:
    """The detector for ``model_id``, loaded; ``SettingsError`` for a family groundlabel does not run."""
    family = detector_family(model_id, offline)
    classes = _classes()
    if family not in classes:
        raise SettingsError(
            f"{model_id!r} is a {family!r} model; groundlabel runs these detector families: {', '.join(classes)}."
        )
    if classes[family] is GroundingDinoDetector:
        return GroundingDinoDetector(
            model_id, device, dtype, input_size, offline=offline, runtime=runtime, cache_dir=cache_dir
        )
    if runtime != "torch":
        raise SettingsError(
            f"GROUNDLABEL_RUNTIME={runtime} converts Grounding DINO models only, not {family}: use "
            "the default runtime (torch) for this detector."
        )
    return classes[family](model_id, device, dtype, input_size, offline=offline)
