"""What one request asks of the pipeline, as one frozen value passed down whole, and the version name it earns."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
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
    # (label, box threshold) pairs, sorted: a label's own box threshold instead of ``box_threshold``; a mapping or
    # "cat=0.4, dog=0.5" is accepted and stored as pairs, so Options stays hashable
    label_thresholds: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "label_thresholds", label_thresholds(self.label_thresholds))
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

    def threshold_for(self, label: str | None) -> float:
        """The box threshold boxes of ``label`` must pass: its own, else ``box_threshold``."""
        return dict(self.label_thresholds).get(label, self.box_threshold) if label else self.box_threshold

    @property
    def lowest_threshold(self) -> float:
        """The lowest box threshold any label has: what the detector's output is first filtered at."""
        return min([self.box_threshold, *(t for _, t in self.label_thresholds)])


_PAIR = re.compile(r"\s*(.*?)\s*[=@]\s*([^=@]*?)\s*$")


def label_thresholds(given: Mapping[str, float] | Iterable | str | None) -> tuple[tuple[str, float], ...]:
    """Per-label box thresholds as sorted (label, threshold) pairs, from a mapping, pairs, ``"cat=0.4, dog=0.5"``
    or a list of such strings (the CLIs' ``--label-threshold cat=0.4``); ``SettingsError`` says what is wrong."""
    if not given:
        return ()
    if isinstance(given, str):
        given = [given]
    if isinstance(given, Mapping):
        given = list(given.items())
    pairs: dict[str, float] = {}
    for item in given:
        if isinstance(item, str):
            for part in filter(str.strip, item.split(",")):
                found = _PAIR.match(part)
                if not found or not found.group(1):
                    raise SettingsError(f"Per-label threshold {part.strip()!r}: write label=threshold, e.g. cat=0.4.")
                pairs[found.group(1)] = _threshold(found.group(1), found.group(2))
            continue
        label, value = item
        if not isinstance(label, str) or not label.strip():
            raise SettingsError(f"A per-label threshold needs a label, got {label!r}.")
        pairs[label.strip()] = _threshold(label.strip(), value)
    return tuple(sorted(pairs.items()))


def _threshold(label: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not 0.0 <= number <= 1.0:
        raise SettingsError(f"The box threshold of label {label!r} must be a number from 0 to 1, got {value!r}.")
    return number


def model_version(
    detector: DetectorSpec,
    options: Options,
    prompt: Prompt | None = None,
    *,
    mask_cap: int = DEFAULT_MAX_MASKS,
    stride: int = 1,
) -> str:
    """``groundlabel-<detector>[+<segmenter>]-box<t>-text<t>[-nms<t>][-lt<hash>][-m<n>][-stride<n>][-p<hash>]``, the
    one name for what produced a result. ``-nms``, ``-lt`` (per-label box thresholds), ``-m`` (the mask cap that
    applies, with masks only: the request's, else ``mask_cap``, the pipeline's GROUNDLABEL_MAX_MASKS) and
    ``-stride`` (a video's detector on every ``stride``-th frame, GROUNDLABEL_VIDEO_STRIDE) appear only when they
    differ from the defaults, so the common versions stay short.

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
    if options.label_thresholds:
        pairs = ";".join(f"{label}={threshold:g}" for label, threshold in options.label_thresholds)
        version += f"-lt{hashlib.sha1(pairs.encode()).hexdigest()[:6]}"
    cap = options.max_masks or mask_cap  # the request's cap, else the pipeline's GROUNDLABEL_MAX_MASKS
    if options.segmenter and cap != DEFAULT_MAX_MASKS:
        version += f"-m{cap}"
    if stride != 1:
        version += f"-stride{stride}"
    return f"{version}-p{prompt_hash(prompt)}" if prompt is not None else version


def prompt_hash(prompt: Prompt) -> str:
    """Six hex digits naming a prompt: its phrases, in order, the labels and thresholds written with them and its
    example boxes."""
    labels = ";".join(f"{phrase}:{label}" for phrase, label in sorted(prompt.explicit_labels.items()))
    thresholds = ";".join(f"{phrase}@{t:g}" for phrase, t in sorted(prompt.thresholds.items()))
    examples = "|" + repr(prompt.key[1:]) if prompt.exemplars else ""
    text = f"{prompt.text}|{labels}{'|' + thresholds if thresholds else ''}{examples}"
    return hashlib.sha1(text.encode()).hexdigest()[:6]
