"""Label mapping: which of a project's labels a prompt phrase stands for, or none (never a guess)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


def _singular(word: str) -> str:
    """Crude English singular, enough to match 'dogs'->'dog', 'boxes'->'box', 'berries'->'berry'."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def _singular_key(text: str) -> str:
    words = _key(text).split(" ")
    return " ".join(words[:-1] + [_singular(words[-1])]) if words and words[-1] else ""


@dataclass
class LabelMap:
    """Maps prompt phrases to target labels.

    Order of rules: an explicit ``phrase:label`` from the prompt, a per-label list of prompt phrases (Label
    Studio's ``predicted_values``), an exact case-insensitive match, then a singular/plural match.
    With no target labels every phrase is its own label.
    """

    labels: Sequence[str] | None = None
    aliases: Mapping[str, Iterable[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_alias: dict[str, str] = {}
        for label, phrases in self.aliases.items():
            for phrase in phrases:
                self._by_alias.setdefault(_key(phrase), label)

    def label_for(self, phrase: str, explicit: Mapping[str, str] | None = None) -> str | None:
        """The target label for ``phrase``, or None when no rule matches."""
        wanted = next((label for text, label in (explicit or {}).items() if _key(text) == _key(phrase)), None)
        if wanted is not None:
            return self._match(wanted) if self.labels is not None else wanted
        if self.labels is None:
            return phrase
        if _key(phrase) in self._by_alias:
            return self._by_alias[_key(phrase)]
        return self._match(phrase)

    def _match(self, text: str) -> str | None:
        assert self.labels is not None
        for rule in (_key, _singular_key):
            matches = [label for label in self.labels if rule(label) == rule(text)]
            if matches:
                return matches[0]
        return None

    def unmapped(self, phrases: Iterable[str], explicit: Mapping[str, str] | None = None) -> list[str]:
        """Phrases that no rule maps to a target label, so a caller can report them."""
        return [phrase for phrase in phrases if self.label_for(phrase, explicit) is None]
