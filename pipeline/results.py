"""The pipeline's output: boxes, scores, phrases, labels and masks for one image, in the upright image's pixels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import supervision as sv

_ROWS = ("scores", "phrases", "prompt_phrases", "labels")


@dataclass(frozen=True)
class DetectionResult:
    """Detections for one image, as columns: row ``i`` of every column belongs to detection ``i``.

    Checked on construction like ``supervision.Detections``; ``result[mask]``, ``result[2:5]`` and
    ``result[[0, 3]]`` select rows. ``labels[i]`` is the target label, or None when the phrase maps to none of
    the target labels; such phrases are listed in ``unmapped`` so callers can say so instead of guessing.
    """

    width: int
    height: int
    xyxy: np.ndarray  # (n, 4) float32 pixels, x0 y0 x1 y1
    scores: np.ndarray  # (n,) float32
    phrases: list[str]  # the text the detector matched for each box
    prompt_phrases: list[str]  # the prompt phrase each box was assigned to
    labels: list[str | None]
    masks: np.ndarray | None = None  # (n, height, width) bool
    unmapped: list[str] = field(default_factory=list)
    model_version: str = ""
    notes: tuple[str, ...] = ()  # sentences about what was limited (e.g. detections left without a mask)

    def __post_init__(self) -> None:
        object.__setattr__(self, "xyxy", np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4))
        object.__setattr__(self, "scores", np.asarray(self.scores, dtype=np.float32).reshape(-1))
        n = len(self.xyxy)
        wrong = {name: len(getattr(self, name)) for name in _ROWS if len(getattr(self, name)) != n}
        if wrong:
            raise ValueError(
                f"DetectionResult columns differ in length: xyxy has {n} rows, "
                + ", ".join(f"{name} {count}" for name, count in wrong.items())
                + "."
            )
        if self.masks is not None and self.masks.shape != (n, self.height, self.width):
            raise ValueError(
                f"masks must be (n, height, width) = {(n, self.height, self.width)}, got {self.masks.shape}."
            )

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> DetectionResult:
        """The detections ``index`` selects: a boolean mask of length n, a slice, an index array or one index."""
        rows = np.arange(len(self))[index].reshape(-1)
        return replace(
            self,
            xyxy=self.xyxy[rows],
            scores=self.scores[rows],
            phrases=[self.phrases[i] for i in rows],
            prompt_phrases=[self.prompt_phrases[i] for i in rows],
            labels=[self.labels[i] for i in rows],
            masks=None if self.masks is None else self.masks[rows],
        )

    def with_labels(self, labels: Sequence[str | None]) -> DetectionResult:
        """The same detections with new labels, one per row (a reviewer's choices)."""
        return replace(self, labels=list(labels))

    def display_labels(self) -> list[str]:
        """The label to show for each box: the target label, or the phrase marked as unmapped."""
        return [label if label is not None else f"{phrase}?" for label, phrase in zip(self.labels, self.prompt_phrases)]

    def to_supervision(self) -> sv.Detections:
        """A ``supervision.Detections`` (class ids index the distinct display labels, in order of appearance)."""
        names = self.display_labels()
        classes = list(dict.fromkeys(names))
        return sv.Detections(
            xyxy=self.xyxy,
            mask=self.masks,
            confidence=self.scores,
            class_id=np.array([classes.index(name) for name in names], dtype=int),
            data={"class_name": np.array(names, dtype=object), "phrase": np.array(self.phrases, dtype=object)},
        )

    def to_dict(self) -> dict:
        """JSON-ready detections (masks left out: they belong in RLE or PNG form, not in JSON numbers)."""
        return {
            "width": self.width,
            "height": self.height,
            "model_version": self.model_version,
            "unmapped": self.unmapped,
            "detections": [
                {
                    "label": label,
                    "phrase": phrase,
                    "prompt_phrase": prompt_phrase,
                    "score": round(float(score), 4),
                    "box_xyxy": [round(float(v), 2) for v in box],
                    "mask_area": None if self.masks is None else int(self.masks[i].sum()),
                }
                for i, (label, phrase, prompt_phrase, score, box) in enumerate(
                    zip(self.labels, self.phrases, self.prompt_phrases, self.scores, self.xyxy)
                )
            ],
        }
