"""Prompts: text phrases, normalised the way Grounding DINO expects ("a. b."), with explicit labels, and example
boxes ("find more like this one") for the detectors that can search by example."""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import ExemplarError, PromptError

if TYPE_CHECKING:
    from .images import LoadedImage

# Grounding DINO reads its prompt as "phrase. phrase." in lower case; "." and "?" end its phrases. A phrase is a run
# of anything else, where "@0.4" (a box threshold, its "." included) counts as part of the phrase.
_PHRASE = re.compile(r"(?:@\s*\d*\.?\d+|[^.,;?\n])+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Exemplar:
    """An example of what to find: a box (pixels, x1 y1 x2 y2) around one object and the label the objects like it
    get; a negative one (``positive=False``) is what not to find. ``image`` is the reference image the box is
    drawn on; None means each image searched (find similar in this image). Its box must have an area and lie at
    least partly on its image; a partly outside box is used as drawn."""

    xyxy: tuple[float, float, float, float]
    label: str
    positive: bool = True
    image: LoadedImage | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        box = tuple(float(v) for v in self.xyxy)
        if len(box) != 4 or not all(map(math.isfinite, box)):
            raise ExemplarError(f"An example box is four numbers x1, y1, x2, y2 in pixels, got {self.xyxy!r}.")
        object.__setattr__(self, "xyxy", box)
        if not self.label.strip():
            raise ExemplarError(f"The example box {self._box} has no label: name what it shows.")
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ExemplarError(
                f"The example box {self._box} for {self.label!r} has no area: draw it around one object."
            )
        if self.image is not None:
            self.check_on(self.image.width, self.image.height)

    @property
    def _box(self) -> str:
        return "(" + ", ".join(f"{v:g}" for v in self.xyxy) + ")"

    def check_on(self, width: int, height: int) -> None:
        """``ExemplarError`` unless the box covers some of a ``width`` x ``height`` image."""
        x1, y1, x2, y2 = self.xyxy
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            raise ExemplarError(
                f"The example box {self._box} for {self.label!r} lies outside the {width}x{height} image: "
                "draw it on the image."
            )

    @property
    def key(self) -> tuple:
        """What the detector's output depends on: the box, its kind and the reference image's pixels."""
        return ("box", self.label, self.positive, self.xyxy, self.image.sha1 if self.image else None)


@dataclass(frozen=True)
class ExemplarQuery:
    """An example box as one detector reads it (OWLv2: the class embedding of its best-matching predicted box): a
    small value that finds the same kind of object on any other image, without the reference image."""

    model: str  # the detector that made it; only that detector can read it
    vector: tuple[float, ...]
    label: str
    positive: bool = True

    @property
    def key(self) -> tuple:
        """Its label, kind and a digest of its vector (the model is in every cache key already)."""
        return ("query", self.label, self.positive, hashlib.sha1(repr(self.vector).encode()).hexdigest()[:16])


@dataclass(frozen=True)
class Prompt:
    """Phrases to look for, the label each phrase stands for when the user named one (``brown dog:dog``), the
    box threshold of a phrase written with one (``cat@0.4``, ``brown dog:dog@0.5``) and example boxes (or their
    queries) to find more of. A detection's name is one of ``names``: a phrase, or a positive example's label."""

    phrases: tuple[str, ...]
    explicit_labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    thresholds: dict[str, float] = field(default_factory=dict, hash=False, compare=False)
    exemplars: tuple[Exemplar | ExemplarQuery, ...] = field(default=(), hash=False, compare=False)

    @property
    def text(self) -> str:
        """The detector's input text: lower-case phrases, each ended by '.'."""
        return " ".join(f"{phrase}." for phrase in self.phrases)

    @property
    def names(self) -> tuple[str, ...]:
        """What a detection can be named: the phrases, then each positive example's label not among them."""
        labels = [e.label for e in self.exemplars if e.positive]
        return self.phrases + tuple(label for label in dict.fromkeys(labels) if label not in self.phrases)

    @property
    def key(self) -> tuple:
        """What a detector's raw output depends on: the text and every example."""
        return (self.text, *(exemplar.key for exemplar in self.exemplars))

    def __hash__(self) -> int:
        return hash(self.phrases)


def parse_prompt(prompt: str | Iterable[str], exemplars: Iterable[Exemplar | ExemplarQuery] = ()) -> Prompt:
    """Accept "dog. possum", "dog, possum" (any of . , ; ? or newline separates phrases) or a list of phrases.

    A phrase written ``text:label`` asks the detector for ``text`` and labels its boxes ``label``; one ending in
    ``@0.4`` (``cat@0.4``, ``brown dog:dog@0.4``) keeps only its boxes scored above 0.4, whatever the box threshold.
    Invisible characters (zero-width spaces, control characters) count as spaces, so a prompt of only those is
    empty. Duplicates are dropped, order is kept. With ``exemplars`` (example boxes, or queries made from them) the
    text may be empty, as long as there is a phrase or a positive example to look for.
    """
    exemplars = tuple(exemplars)
    parts = _PHRASE.findall(prompt) if isinstance(prompt, str) else list(prompt)
    phrases: list[str] = []
    explicit: dict[str, str] = {}
    thresholds: dict[str, float] = {}
    for part in parts:
        if not isinstance(part, str):
            raise PromptError(f"Prompt phrases must be text, got {type(part).__name__}.")
        part, at, threshold = _visible(part).partition("@")
        text, _, label = part.partition(":")
        phrase = _SPACES.sub(" ", text).strip().lower()
        if not phrase:
            continue
        if label.strip():
            explicit[phrase] = _SPACES.sub(" ", label).strip()
        if at:
            thresholds[phrase] = _threshold(phrase, threshold)
        if phrase not in phrases:
            phrases.append(phrase)
    if not phrases and not any(exemplar.positive for exemplar in exemplars):
        if exemplars:
            raise ExemplarError("Only negative example boxes were given: add a phrase or a positive example box.")
        raise PromptError('The prompt is empty: type what to look for, e.g. "dog. possum on a fence".')
    return Prompt(phrases=tuple(phrases), explicit_labels=explicit, thresholds=thresholds, exemplars=exemplars)


def _threshold(phrase: str, text: str) -> float:
    """The number after a phrase's "@", checked."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise PromptError(
            f'"{phrase}@{text.strip()}": the box threshold after "@" must be a number from 0 to 1, e.g. "{phrase}@0.4".'
        )
    return value


def _visible(text: str) -> str:
    """``text`` with control, format (zero-width) and other invisible characters turned into spaces."""
    return "".join(" " if unicodedata.category(char).startswith("C") else char for char in text)
