"""Settings of the Label Studio side and of the app, read from the environment once, by the entry points (app.py,
``python -m sync.prelabel``), under the names Label Studio's Grounding DINO / SAM examples use.

``BackendSettings`` carries the pipeline's own settings and the default request ``Options`` too, so an entry point
reads the environment once and hands one object down to the UI, the ML-backend router and the command lines.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field, replace
from pathlib import Path

from pipeline import (
    DEFAULT_BOX_THRESHOLD,
    DEFAULT_NMS_THRESHOLD,
    DEFAULT_TEXT_THRESHOLD,
    Options,
    PipelineSettings,
    SettingsError,
    segmenter_spec,
)

from .addresses import AddressPolicy

_TRUE = {"1", "true", "yes", "on"}
# Seconds a Label Studio request or an image host may stay silent; a download gets three times this in all.
DEFAULT_TIMEOUT = 10.0
# Larger than any photo people label (a 40 MP JPEG is ~15 MB); a cap so a wrong URL cannot fill memory.
DEFAULT_MAX_IMAGE_BYTES = 64 << 20
# JSON per bulk write of predictions: a write of 10 predictions with masks took past its 60 s timeout (issue 25).
DEFAULT_WRITE_BATCH_BYTES = 4 << 20
# Masks for configs that ask for them; USE_SAM picks SAM vit_h like Label Studio's Grounding SAM example.
DEFAULT_SEGMENTER = "mobile_sam"
# Which regions a text prompt's detections become (GROUNDLABEL_OUTPUT, or a project's ML-backend extra_params):
# "auto" is masks only when the config has a mask tag and a segmenter runs, else boxes only (a box and its mask put
# their accept buttons on one spot in Label Studio's editor); "both" fills every labels tag of the config.
OUTPUTS = ("auto", "boxes", "masks", "both")
_UNSET = "(unset)"  # a keyword shorthand not given (None is a segmenter choice: never masks)


@dataclass(frozen=True)
class BackendSettings:
    label_studio_url: str | None = None
    label_studio_token: str | None = field(default=None, repr=False)
    # what a request that sets nothing gets: thresholds, and the segmenter (run only for configs with mask regions;
    # None: never); also readable as ``box_threshold``, ``text_threshold``, ``nms_threshold``, ``segmenter``
    defaults: Options = Options(DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD, DEFAULT_SEGMENTER)
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    state_dir: Path = Path(".groundlabel")  # small state: last prompt per project, the push outbox
    timeout: float = DEFAULT_TIMEOUT
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES  # per image, downloaded or uploaded
    host: str = "0.0.0.0"
    port: int = 7860
    log_level: str = "INFO"
    max_retries: int = 3  # runs a task may fail in a way that may pass before it gets an empty prediction
    predict_budget: float = 60.0  # seconds a batch /predict may take (Label Studio waits 100); 0: no budget
    write_batch_bytes: int = DEFAULT_WRITE_BATCH_BYTES  # JSON per bulk request of predictions (one bigger goes alone)
    addresses: AddressPolicy = AddressPolicy()  # where images may come from (sync.addresses)
    # which labels tags a text prompt fills (sync.config.OUTPUTS), unless a project's extra_params say otherwise;
    # GROUNDLABEL_OUTPUT's default is "auto" (masks or boxes, never both); constructed in code, every tag ("both")
    output: str = "both"
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    # keyword shorthands that set one field of ``defaults``: BackendSettings(box_threshold=0.3, segmenter=None)
    box_threshold: InitVar[float | None] = None
    text_threshold: InitVar[float | None] = None
    segmenter: InitVar[str | None] = _UNSET

    def __post_init__(self, box_threshold: float | None, text_threshold: float | None, segmenter: str | None) -> None:
        given = {"box_threshold": box_threshold, "text_threshold": text_threshold}
        given = {name: value for name, value in given.items() if value is not None}
        if segmenter != _UNSET:
            given["segmenter"] = segmenter
        if given:
            object.__setattr__(self, "defaults", replace(self.defaults, **given))  # Options checks the values
        if self.output not in OUTPUTS:
            raise SettingsError(f"GROUNDLABEL_OUTPUT={self.output!r}: use {', '.join(OUTPUTS)}.")

    @property
    def outbox_dir(self) -> Path:
        return self.state_dir / "outbox"

    def options(self, masks: bool = True) -> Options:
        """The default options, with the segmenter only when masks are wanted."""
        return self.defaults if masks else replace(self.defaults, segmenter=None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> BackendSettings:
        """LABEL_STUDIO_URL | LABEL_STUDIO_HOST, LABEL_STUDIO_API_KEY | LABEL_STUDIO_ACCESS_TOKEN, BOX_THRESHOLD,
        TEXT_THRESHOLD, NMS_THRESHOLD, GROUNDLABEL_OUTPUT, USE_SAM / USE_MOBILE_SAM / SAM_CHOICE (or GROUNDLABEL_SEGMENTER=name|none), BASIC_AUTH_USER /
        BASIC_AUTH_PASS (both or neither), GROUNDLABEL_STATE_DIR, GROUNDLABEL_TIMEOUT (seconds),
        GROUNDLABEL_MAX_IMAGE_BYTES, GROUNDLABEL_HOST, PORT, GROUNDLABEL_LOG_LEVEL, GROUNDLABEL_MAX_RETRIES,
        GROUNDLABEL_PREDICT_BUDGET, GROUNDLABEL_WRITE_BATCH_BYTES,
        GROUNDLABEL_ALLOWED_HOSTS, and ``PipelineSettings.from_env``'s variables."""

        def first(*names: str) -> str | None:
            return next((environ[name].strip() for name in names if environ.get(name, "").strip()), None)

        def flag(name: str) -> bool:
            return (first(name) or "").lower() in _TRUE

        def number(name: str, default: float, low: float, high: float) -> float:
            raw = first(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise SettingsError(f"{name}={raw!r} is not a number between {low:g} and {high:g}.") from None
            if not low <= value <= high:
                raise SettingsError(f"{name}={raw!r} is outside {low:g}..{high:g}.")
            return value

        segmenter = first("GROUNDLABEL_SEGMENTER") or (
            "mobile_sam" if flag("USE_MOBILE_SAM") else "sam_vit_h" if flag("USE_SAM") else _sam_choice(first)
        )
        user, password = first("BASIC_AUTH_USER"), first("BASIC_AUTH_PASS")
        if bool(user) != bool(password):
            raise SettingsError(
                "Set both BASIC_AUTH_USER and BASIC_AUTH_PASS, or neither: with only one of them the "
                "ML-backend routes would be open to anyone."
            )
        return cls(
            label_studio_url=first("LABEL_STUDIO_URL", "LABEL_STUDIO_HOST"),
            label_studio_token=first("LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN"),
            defaults=Options(
                number("BOX_THRESHOLD", DEFAULT_BOX_THRESHOLD, 0.0, 1.0),
                number("TEXT_THRESHOLD", DEFAULT_TEXT_THRESHOLD, 0.0, 1.0),
                None if segmenter.lower() == "none" else segmenter_spec(segmenter).name,  # fails on a typo
                nms_threshold=number("NMS_THRESHOLD", DEFAULT_NMS_THRESHOLD, 0.0, 1.0),
            ),
            output=(first("GROUNDLABEL_OUTPUT") or "auto").lower(),
            basic_auth=(user, password) if user and password else None,
            state_dir=Path(first("GROUNDLABEL_STATE_DIR") or Path.cwd() / ".groundlabel"),
            timeout=number("GROUNDLABEL_TIMEOUT", DEFAULT_TIMEOUT, 0.1, 3600),
            max_image_bytes=int(number("GROUNDLABEL_MAX_IMAGE_BYTES", DEFAULT_MAX_IMAGE_BYTES, 1, 1 << 40)),
            host=first("GROUNDLABEL_HOST") or "0.0.0.0",
            port=int(number("PORT", 7860, 1, 65535)),
            log_level=_log_level(first("GROUNDLABEL_LOG_LEVEL") or "INFO"),
            max_retries=int(number("GROUNDLABEL_MAX_RETRIES", 3, 1, 1000)),
            predict_budget=number("GROUNDLABEL_PREDICT_BUDGET", 60.0, 0.0, 3600),
            write_batch_bytes=int(number("GROUNDLABEL_WRITE_BATCH_BYTES", DEFAULT_WRITE_BATCH_BYTES, 1, 1 << 40)),
            addresses=_addresses(first("GROUNDLABEL_ALLOWED_HOSTS")),
            pipeline=PipelineSettings.from_env(environ),
        )

    def configure_logging(self) -> None:
        """Timestamped log lines at ``log_level`` for the app and the command lines (httpx's per-request lines
        only from DEBUG on)."""
        logging.basicConfig(level=self.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("httpx").setLevel(logging.DEBUG if self.log_level == "DEBUG" else logging.WARNING)


# ``defaults``' fields read as the settings' own (the keyword shorthands above are not stored: ``defaults`` is)
for _name in ("box_threshold", "text_threshold", "nms_threshold", "segmenter"):
    setattr(BackendSettings, _name, property(lambda self, name=_name: getattr(self.defaults, name)))


def _addresses(text: str | None) -> AddressPolicy:
    try:
        return AddressPolicy.parse(text)
    except ValueError as error:
        raise SettingsError(f"GROUNDLABEL_ALLOWED_HOSTS={text!r}: {error}.") from None


def _log_level(name: str) -> str:
    if name.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"GROUNDLABEL_LOG_LEVEL={name!r}: use DEBUG, INFO, WARNING or ERROR.")
    return name.upper()


def _sam_choice(first) -> str:
    """Label Studio's Segment Anything example backend picks its model with SAM_CHOICE=MobileSAM|SAM|ONNX."""
    choice = (first("SAM_CHOICE") or "").strip()
    if not choice:
        return DEFAULT_SEGMENTER
    known = {"mobilesam": "mobile_sam", "sam": "sam_vit_h"}
    if choice.lower() not in known:
        raise SettingsError(
            f"SAM_CHOICE={choice!r}: groundlabel runs MobileSAM or SAM (set SAM_CHOICE=MobileSAM or "
            "SAM, or GROUNDLABEL_SEGMENTER); ONNX exports are not supported."
        )
    return known[choice.lower()]
