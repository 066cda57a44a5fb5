"""Text prompts: split into phrases, normalised the way Grounding DINO expects ("a. b."), with explicit labels."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import PromptError

# Grounding DINO reads its prompt as "phrase. phrase." in lower case; "." and "?" end its phrases.
_SEPARATORS = re.compile(r"[.,;?\n]+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Prompt:
    """Phrases to look for, and the label each phrase stands for when the user named one (``brown dog:dog``)."""

    phrases: tuple[str, ...]
    explicit_labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def text(self) -> str:
        """The detector's input text: lower-case phrases, each ended by '.'."""
        return " ".join(f"{phrase}." for phrase in self.phrases)

    def __hash__(self) -> int:
        return hash(self.phrases)


def parse_prompt(prompt: str | Iterable[str]) -> Prompt:
    """Accept "dog. possum", "dog, possum" (any of . , ; ? or newline separates phrases) or a list of phrases.

    A phrase written ``text:label`` asks the detector for ``text`` and labels its boxes ``label``.
    Invisible characters (zero-width spaces, control characters) count as spaces, so a prompt of only those is
    empty. Duplicates are dropped, order is kept.
    """
    parts = _SEPARATORS.split(prompt) if isinstance(prompt, str) else list(prompt)
    phrases: list[str] = []
    explicit: dict[str, str] = {}
    for part in parts:
        if not isinstance(part, str):
            raise PromptError(f"Prompt phrases must be text, got {type(part).__name__}.")
        text, _, label = _visible(part).partition(":")
        phrase = _SPACES.sub(" ", text).strip().lower()
        if not phrase:
            continue
        if label.strip():
            explicit[phrase] = _SPACES.sub(" ", label).strip()
        if phrase not in phrases:
            phrases.append(phrase)
    if not phrases:
        raise PromptError('The prompt is empty: type what to look for, e.g. "dog. possum on a fence".')
    return Prompt(phrases=tuple(phrases), explicit_labels=explicit)


def _visible(text: str) -> str:
    """``text`` with control, format (zero-width) and other invisible characters turned into spaces."""
    return "".join(" " if unicodedata.category(char).startswith("C") else char for char in text)
