"""What one request asks of the pipeline, as one frozen value passed down whole, and the version name it earns."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .errors import SettingsError
from .prompts import Prompt
from .registry import DetectorSpec, segmenter_spec
from .settings import DEFAULT_MAX_MASKS

DEFAULT_BOX_THRESHOLD = 0.35
DEFAULT_TEXT_THRESHOLD = 0.25
# Boxes of one label overlapping more than this (IoU) keep only the higher-scoring one; 1 keeps every box. On 60 toy
# scenes (tests/test_pipeline_duplicates.py) 0.5 removes the 7 duplicates of 129 boxes (IoU 0.67-0.99 with a box
# of their label) and no right answer: recall 117/124 with and without it.
DEFAULT_NMS_THRESHOLD = 0.5
VERSION_PREFIX = "groundlabel"


@dataclass(frozen=True)
class Options:
    """Thresholds, the segmenter and the detector for one request. Only post-processing reads the thresholds, so
    changing them re-filters cached detector output; ``segmenter`` None means boxes only; ``detector`` None means the
    pipeline's own (a registered name, Hub id or local directory picks another at run time)."""

    box_threshold: float = DEFAULT_BOX_THRESHOLD
    text_threshold: float = DEFAULT_TEXT_THRESHOLD
    segmenter: str | None = None
    detector: str | None = None
    max_masks: int | None = None  # detections per image that get masks; None: the pipeline's GROUNDLABEL_MAX_MASKS
    nms_threshold: float = DEFAULT_NMS_THRESHOLD  # IoU above which a box of the same label is a duplicate

    def __post_init__(self) -> None:
        if self.max_masks is not None and (not isinstance(self.max_masks, int) or self.max_masks < 1):
            raise SettingsError(f"Max masks must be a whole number of at least 1, got {self.max_masks!r}.")
        for name in ("box_threshold", "text_threshold", "nms_threshold"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                what = name.replace("_", " ").capitalize().replace("Nms", "NMS")
                raise SettingsError(f"{what} must be a number from 0 to 1, got {value!r}.")
            object.__setattr__(self, name, float(value))
        if self.segmenter is not None:
            object.__setattr__(self, "segmenter", segmenter_spec(self.segmenter).name)  # a typo fails here


def model_version(
    detector: DetectorSpec, options: Options, prompt: Prompt | None = None, *, mask_cap: int = DEFAULT_MAX_MASKS
) -> str:
    """``groundlabel-<detector>[+<segmenter>]-box<t>-text<t>[-nms<t>][-m<n>][-p<hash>]``, the one name for what
    produced a result. ``-nms`` and ``-m`` (the mask cap that applies, with masks only: the request's, else ``mask_cap``,
    the pipeline's GROUNDLABEL_MAX_MASKS) appear only when they differ from the defaults, so the
    common versions stay short.

    ``detector`` is the resolved spec (its ``name``: the registered short name, or a Hub id's or directory's last
    part, whatever name it was asked by and wherever its local copy lies); ``prompt`` adds a short hash of its
    phrases and explicit labels, so results of another prompt count as another version. A detector that makes the
    masks (SAM 3) writes ``+masks`` instead of the segmenter's name. Computed from the spec alone, never from what a
    loaded model says, so it is the same before the first load (Label Studio's /setup asks then) and after. The
    prefix tells our predictions from other models'.
    """
    name = detector.name
    if options.segmenter:
        name += "+masks" if detector.makes_masks else f"+{options.segmenter}"
    version = f"{VERSION_PREFIX}-{name}-box{options.box_threshold:g}-text{options.text_threshold:g}"
    if options.nms_threshold != DEFAULT_NMS_THRESHOLD:
        version += f"-nms{options.nms_threshold:g}"
    cap = options.max_masks or mask_cap  # the request's cap, else the pipeline's GROUNDLABEL_MAX_MASKS
    if options.segmenter and cap != DEFAULT_MAX_MASKS:
        version += f"-m{cap}"
    return f"{version}-p{prompt_hash(prompt)}" if prompt is not None else version


def prompt_hash(prompt: Prompt) -> str:
    """Six hex digits naming a prompt: its phrases, in order, and the labels written with them."""
    labels = ";".join(f"{phrase}:{label}" for phrase, label in sorted(prompt.explicit_labels.items()))
    return hashlib.sha1(f"{prompt.text}|{labels}".encode()).hexdigest()[:6]
