"""Text prompts: split into phrases, normalised the way Grounding DINO expects ("a. b."), with explicit labels."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import PromptError

# Grounding DINO reads its prompt as "phrase. phrase." in lower case; "." and "?" end its phrases. A phrase is a run
# of anything else, where "@0.4" (a box threshold, its "." included) counts as part of the phrase.
_PHRASE = re.compile(r"(?:@\s*\d*\.?\d+|[^.,;?\n])+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Prompt:
    """Phrases to look for, the label each phrase stands for when the user named one (``brown dog:dog``) and the
    box threshold of a phrase written with one (``cat@0.4``, ``brown dog:dog@0.5``)."""

    phrases: tuple[str, ...]
    explicit_labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    thresholds: dict[str, float] = field(default_factory=dict, hash=False, compare=False)

    @property
    def text(self) -> str:
        """The detector's input text: lower-case phrases, each ended by '.'."""
        return " ".join(f"{phrase}." for phrase in self.phrases)

    def __hash__(self) -> int:
        return hash(self.phrases)


def parse_prompt(prompt: str | Iterable[str]) -> Prompt:
    """Accept "dog. possum", "dog, possum" (any of . , ; ? or newline separates phrases) or a list of phrases.

    A phrase written ``text:label`` asks the detector for ``text`` and labels its boxes ``label``; one ending in
    ``@0.4`` (``cat@0.4``, ``brown dog:dog@0.4``) keeps only its boxes scored above 0.4, whatever the box threshold.
    Invisible characters (zero-width spaces, control characters) count as spaces, so a prompt of only those is
    empty. Duplicates are dropped, order is kept.
    """
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
    if not phrases:
        raise PromptError('The prompt is empty: type what to look for, e.g. "dog. possum on a fence".')
    return Prompt(phrases=tuple(phrases), explicit_labels=explicit, thresholds=thresholds)


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
