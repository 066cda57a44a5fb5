"""The pipeline's settings, read from the environment once, by the entry points (``python -m pipeline``, app.py).

Nothing below the entry points reads the environment: the loaders get these values passed down, so tests and
embedding programs configure groundlabel by building a ``PipelineSettings``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SettingsError
from .registry import DEFAULT_DETECTOR, DETECTORS, SEGMENTERS, DetectorSpec, resolve_detector

# 40 MP covers any camera or scanner page people label; beyond that, decoding alone can take gigabytes.
DEFAULT_MAX_PIXELS = 40_000_000
# Segmenter weights kept loaded at once: SAM vit_h (2.4 GiB) beside any smaller one.
DEFAULT_SEGMENTER_MEMORY = 4 << 30
# Detections per image that get a mask (the highest-scoring ones; the rest stay boxes), and the bytes those masks
# may take (H x W bytes each): at box threshold 0 the detector proposes 900 boxes, 10.8 GB of masks at 12 MP.
DEFAULT_MAX_MASKS = 100
DEFAULT_MASK_MEMORY = 512 << 20
# Video: the detector runs on every n-th frame (1: every frame; tracks keep the frames it ran on). A video of more
# frames than the bound (one hour at 30 frames/s) is refused with a sentence and no result: before decoding when its
# header says how many it has, else at the first frame past the bound.
DEFAULT_VIDEO_STRIDE = 1
DEFAULT_MAX_VIDEO_FRAMES = 108_000
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class PipelineSettings:
    """Which detector, where it runs, and where segmenter weights come from.

    ``checkpoints`` maps a registered model's name to its local copy (a segmenter's checkpoint file, a transformers
    model's directory); a segmenter without one is looked up in ``cache_dir`` and, unless ``offline``, downloaded
    there once, a detector without one comes from the Hub. ``batch_size`` is images per detector forward
    (None: 4 on a GPU, 1 on a CPU). ``detector`` is what was asked for (a registered name, Hub id or directory);
    ``detector_spec`` is it resolved, once, with its local copy: what everything below reads.
    """

    detector: str = DEFAULT_DETECTOR
    device: str | None = None
    dtype: str | None = None
    input_size: int | None = None
    checkpoints: Mapping[str, str] = field(default_factory=dict)
    cache_dir: Path = Path.home() / ".cache" / "groundlabel"
    offline: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    batch_size: int | None = None
    runtime: str = "torch"  # or "openvino": the detector on OpenVINO (CPU, fp32; pipeline/runtime.py)
    segmenter_memory: int = DEFAULT_SEGMENTER_MEMORY  # bytes of segmenter weights kept loaded (LRU unloaded first)
    max_masks: int = DEFAULT_MAX_MASKS  # detections per image that get masks (Options.max_masks overrides)
    mask_memory: int = DEFAULT_MASK_MEMORY  # bytes of masks per image: fewer masks on larger images
    video_stride: int = DEFAULT_VIDEO_STRIDE  # a video's frames the detector sees: every n-th (part of the version)
    max_video_frames: int = DEFAULT_MAX_VIDEO_FRAMES  # longer videos are refused with a sentence
    detector_spec: DetectorSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("video_stride", "max_video_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SettingsError(
                    f"The {name.replace('_', ' ')} must be a whole number of at least 1, got {value!r}."
                )
        object.__setattr__(self, "detector_spec", self.resolve(self.detector))

    def resolve(self, name: str) -> DetectorSpec:
        """Detector ``name`` (a registered name, Hub id or directory) as a spec, with its local copy when one is
        set; the app's own spec for any name of the app's detector."""
        spec = resolve_detector(name, self.checkpoints)
        own = getattr(self, "detector_spec", None)  # None while __post_init__ resolves it
        return own if own is not None and spec.load_from == own.load_from else spec

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> PipelineSettings:
        """GROUNDLABEL_DETECTOR, _DEVICE, _DTYPE, _INPUT_SIZE, _MAX_PIXELS, _BATCH_SIZE, _RUNTIME, _SEGMENTER_MEMORY_MB, _MAX_MASKS,
        _MASK_MEMORY_MB, _VIDEO_STRIDE, _MAX_VIDEO_FRAMES, _CACHE,
        _OFFLINE (or
        HF_HUB_OFFLINE=1), and per registered model GROUNDLABEL_<NAME>_CHECKPOINT (or the names Label Studio's
        example backends use: SAM_CHECKPOINT or VITH_CHECKPOINT for sam_vit_h, MOBILESAM_CHECKPOINT)."""

        def get(name: str) -> str | None:
            return (environ.get(name) or "").strip() or None

        checkpoints = {spec.name: get(spec.env_var) for spec in DETECTORS.values() if get(spec.env_var)}
        for spec in SEGMENTERS.values():
            path = next((get(name) for name in (spec.env_var, *spec.seed_env_vars) if get(name)), None)
            if path:
                checkpoints[spec.name] = path
        return cls(
            detector=get("GROUNDLABEL_DETECTOR") or DEFAULT_DETECTOR,
            device=get("GROUNDLABEL_DEVICE"),
            dtype=get("GROUNDLABEL_DTYPE"),
            input_size=_integer(get, "GROUNDLABEL_INPUT_SIZE"),
            checkpoints=checkpoints,
            cache_dir=Path(get("GROUNDLABEL_CACHE") or Path.home() / ".cache" / "groundlabel"),
            offline=any((get(name) or "").lower() in _TRUE for name in ("GROUNDLABEL_OFFLINE", "HF_HUB_OFFLINE")),
            max_pixels=_integer(get, "GROUNDLABEL_MAX_PIXELS") or DEFAULT_MAX_PIXELS,
            batch_size=_integer(get, "GROUNDLABEL_BATCH_SIZE"),
            runtime=(get("GROUNDLABEL_RUNTIME") or "torch").lower(),
            segmenter_memory=(
                _integer(get, "GROUNDLABEL_SEGMENTER_MEMORY_MB") << 20
                if get("GROUNDLABEL_SEGMENTER_MEMORY_MB")
                else DEFAULT_SEGMENTER_MEMORY
            ),
            max_masks=_integer(get, "GROUNDLABEL_MAX_MASKS") or DEFAULT_MAX_MASKS,
            mask_memory=(
                _integer(get, "GROUNDLABEL_MASK_MEMORY_MB") << 20
                if get("GROUNDLABEL_MASK_MEMORY_MB")
                else DEFAULT_MASK_MEMORY
            ),
            video_stride=_integer(get, "GROUNDLABEL_VIDEO_STRIDE") or DEFAULT_VIDEO_STRIDE,
            max_video_frames=_integer(get, "GROUNDLABEL_MAX_VIDEO_FRAMES") or DEFAULT_MAX_VIDEO_FRAMES,
        )


def _integer(get, name: str) -> int | None:
    raw = get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number.") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be greater than 0.")
    return value
