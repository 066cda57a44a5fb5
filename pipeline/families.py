"""Loads a detector from its resolved spec: the registry's family (or, for an unregistered Hub id, the family its
config.json names) picks the adapter class, so any Hub id or local directory of a supported family works."""

from __future__ import annotations

from pathlib import Path

from .detector import CachedDetector
from .errors import SettingsError
from .registry import FAMILIES, DetectorSpec, Family, resolve_detector
from .weights import load_pretrained


def detector_family(spec: DetectorSpec, offline: bool) -> str:
    """The family (config ``model_type``) of a detector: the registry's or its config.json's, else its Hub config's."""
    if spec.family is not None:
        return spec.family
    from transformers import AutoConfig

    return load_pretrained(spec.load_from, offline, AutoConfig)[0].model_type


def reads_text_threshold(name: str) -> bool:
    """Whether a detector (name, Hub id or local directory) reads a text threshold, without loading it."""
    return resolve_detector(name).reads_text_threshold


def load_detector(
    spec: DetectorSpec,
    device: str | None = None,
    dtype: str | None = None,
    input_size: int | None = None,
    offline: bool = False,
    runtime: str = "torch",
    cache_dir: Path | None = None,
) -> CachedDetector:
    """The detector ``spec`` names, loaded; ``SettingsError`` for a family groundlabel does not run or a runtime
    its family does not run on."""
    name = detector_family(spec, offline)
    family = FAMILIES.get(name)
    if family is None:
        raise SettingsError(
            f"{spec.source!r} is a {name!r} model; groundlabel runs these detector families: {', '.join(FAMILIES)}."
        )
    if runtime not in family.runtimes:
        raise SettingsError(_runtime_refused(runtime, family))
    other_runtime = {} if runtime == "torch" else {"runtime": runtime, "cache_dir": cache_dir}
    return family.adapter_class()(spec.load_from, device, dtype, input_size, offline=offline, **other_runtime)


def _runtime_refused(runtime: str, family: Family) -> str:
    """Why ``family`` does not run on ``runtime``: no family does, or only others do."""
    known = dict.fromkeys(name for entry in FAMILIES.values() for name in entry.runtimes)
    if runtime not in known:
        return f"Unknown runtime {runtime!r}; choose one of {', '.join(known)}."
    runs = " and ".join(entry.title for entry in FAMILIES.values() if runtime in entry.runtimes)
    return (
        f"GROUNDLABEL_RUNTIME={runtime} converts {runs} models only, not {family.title}: use the default runtime "
        "(torch) for this detector."
    )
