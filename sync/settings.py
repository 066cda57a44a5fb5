"""Environment settings of the ML backend, under the names Label Studio's Grounding DINO / SAM examples use."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD, segmenter_spec

_TRUE = {"1", "true", "yes", "on"}
# Masks for configs that ask for them; USE_SAM picks SAM vit_h like Label Studio's Grounding SAM example.
DEFAULT_SEGMENTER = "mobile_sam"


def _first(*names: str) -> str | None:
    return next((os.environ[name].strip() for name in names if os.environ.get(name, "").strip()), None)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def state_dir() -> Path:
    """Where groundlabel keeps small state (last prompt per project, the push outbox): GROUNDLABEL_STATE_DIR."""
    return Path(os.environ.get("GROUNDLABEL_STATE_DIR") or Path.cwd() / ".groundlabel")


@dataclass(frozen=True)
class BackendSettings:
    label_studio_url: str | None = None
    label_studio_token: str | None = field(default=None, repr=False)
    box_threshold: float = DEFAULT_BOX_THRESHOLD
    text_threshold: float = DEFAULT_TEXT_THRESHOLD
    segmenter: str | None = DEFAULT_SEGMENTER  # runs only for configs with BrushLabels / PolygonLabels; None: never
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    state_dir: Path = Path(".groundlabel")

    @classmethod
    def from_env(cls) -> BackendSettings:
        """LABEL_STUDIO_URL | LABEL_STUDIO_HOST, LABEL_STUDIO_API_KEY | LABEL_STUDIO_ACCESS_TOKEN, BOX_THRESHOLD,
        TEXT_THRESHOLD, USE_SAM / USE_MOBILE_SAM (or GROUNDLABEL_SEGMENTER=name|none),
        BASIC_AUTH_USER / BASIC_AUTH_PASS, GROUNDLABEL_STATE_DIR."""
        segmenter = _first("GROUNDLABEL_SEGMENTER") or (
            "mobile_sam" if _flag("USE_MOBILE_SAM") else "sam_vit_h" if _flag("USE_SAM") else DEFAULT_SEGMENTER
        )
        user, password = _first("BASIC_AUTH_USER"), _first("BASIC_AUTH_PASS")
        return cls(
            label_studio_url=_first("LABEL_STUDIO_URL", "LABEL_STUDIO_HOST"),
            label_studio_token=_first("LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN"),
            box_threshold=_threshold("BOX_THRESHOLD", DEFAULT_BOX_THRESHOLD),
            text_threshold=_threshold("TEXT_THRESHOLD", DEFAULT_TEXT_THRESHOLD),
            segmenter=None if segmenter.lower() == "none" else segmenter_spec(segmenter).name,  # fails on a typo
            basic_auth=(user, password) if user and password else None,
            state_dir=state_dir(),
        )


def _threshold(name: str, default: float) -> float:
    raw = _first(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number between 0 and 1.") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={raw!r} is outside 0..1.")
    return value
