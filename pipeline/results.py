"""The pipeline's output: boxes, scores, phrases, labels and masks for one image, in the upright image's pixels."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import supervision as sv


@dataclass(frozen=True)
class DetectionResult:
    """Detections for one image. Row ``i`` of every array belongs to detection ``i``.

    ``labels[i]`` is the target label, or None when the phrase maps to none of the target labels; such
    phrases are listed in ``unmapped`` so callers can say so instead of guessing.
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

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, indices: Sequence[int]) -> DetectionResult:
        """A result with only the given detections, e.g. those a reviewer kept."""
        indices = list(indices)
        return replace(
            self,
            xyxy=self.xyxy[indices].reshape(-1, 4),
            scores=self.scores[indices],
            phrases=[self.phrases[i] for i in indices],
            prompt_phrases=[self.prompt_phrases[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            masks=None if self.masks is None else self.masks[indices],
        )

    def relabel(self, index: int, label: str) -> DetectionResult:
        labels = list(self.labels)
        labels[index] = label
        return replace(self, labels=labels)

    def display_labels(self) -> list[str]:
        """The label to show for each box: the target label, or the phrase marked as unmapped."""
        return [label if label is not None else f"{phrase}?" for label, phrase in zip(self.labels, self.prompt_phrases)]

    def to_supervision(self) -> sv.Detections:
        """A ``supervision.Detections`` (class ids index the distinct display labels, in order of appearance)."""
        names = self.display_labels()
        classes = list(dict.fromkeys(names))
        return sv.Detections(
            xyxy=self.xyxy.astype(np.float32).reshape(-1, 4),
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
