"""Environment settings of the ML backend, under the names Label Studio's Grounding DINO / SAM examples use."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD, segmenter_spec

_TRUE = {"1", "true", "yes", "on"}
# Seconds a Label Studio request or an image host may stay silent; a download gets three times this in all.
DEFAULT_TIMEOUT = 10.0
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
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_env(cls) -> BackendSettings:
        """LABEL_STUDIO_URL | LABEL_STUDIO_HOST, LABEL_STUDIO_API_KEY | LABEL_STUDIO_ACCESS_TOKEN, BOX_THRESHOLD,
        TEXT_THRESHOLD, USE_SAM / USE_MOBILE_SAM (or GROUNDLABEL_SEGMENTER=name|none),
        BASIC_AUTH_USER / BASIC_AUTH_PASS (both or neither), GROUNDLABEL_STATE_DIR, GROUNDLABEL_TIMEOUT (seconds)."""
        segmenter = _first("GROUNDLABEL_SEGMENTER") or (
            "mobile_sam" if _flag("USE_MOBILE_SAM") else "sam_vit_h" if _flag("USE_SAM") else DEFAULT_SEGMENTER
        )
        user, password = _first("BASIC_AUTH_USER"), _first("BASIC_AUTH_PASS")
        if bool(user) != bool(password):
            raise ValueError("Set both BASIC_AUTH_USER and BASIC_AUTH_PASS, or neither: with only one of them the "
                             "ML-backend routes would be open to anyone.")
        return cls(
            label_studio_url=_first("LABEL_STUDIO_URL", "LABEL_STUDIO_HOST"),
            label_studio_token=_first("LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN"),
            box_threshold=_number("BOX_THRESHOLD", DEFAULT_BOX_THRESHOLD, 0.0, 1.0),
            text_threshold=_number("TEXT_THRESHOLD", DEFAULT_TEXT_THRESHOLD, 0.0, 1.0),
            segmenter=None if segmenter.lower() == "none" else segmenter_spec(segmenter).name,  # fails on a typo
            basic_auth=(user, password) if user and password else None,
            state_dir=state_dir(),
            timeout=_number("GROUNDLABEL_TIMEOUT", DEFAULT_TIMEOUT, 0.1, 3600),
        )


def _number(name: str, default: float, low: float, high: float) -> float:
    raw = _first(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number between {low:g} and {high:g}.") from None
    if not low <= value <= high:
        raise ValueError(f"{name}={raw!r} is outside {low:g}..{high:g}.")
    return value
