"""The grounding pipeline: image + text prompt + thresholds -> labeled boxes, and masks when a segmenter is named."""

from __future__ import annotations

import os
from typing import Iterable, Sequence

from .detector import DEFAULT_DETECTOR, GroundingDinoDetector
from .images import LoadedImage, load_image
from .labels import LabelMap
from .prompts import Prompt, parse_prompt
from .results import DetectionResult
from .segmenter import SegmenterPool
from .weights import segmenter_spec

DEFAULT_BOX_THRESHOLD = 0.35
DEFAULT_TEXT_THRESHOLD = 0.25


class GroundingPipeline:
    """Grounding DINO for boxes, then optionally SAM / MobileSAM for masks.

    Every stage is cached: the detector's raw outputs (so thresholds re-filter without a model run), the
    segmenter's image embedding (so a new prompt on the same image only runs the mask decoder) and masks per box.
    """

    def __init__(self, detector: GroundingDinoDetector, segmenters: SegmenterPool | None = None):
        self.detector = detector
        self.segmenters = segmenters or SegmenterPool(device=str(detector.device))

    @classmethod
    def from_pretrained(
        cls,
        detector: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        input_size: int | None = None,
        checkpoints: dict[str, str] | None = None,
    ) -> GroundingPipeline:
        """Load the detector now (Hub id or local dir; GROUNDLABEL_DETECTOR by default); segmenters on first use."""
        model_id = detector or os.environ.get("GROUNDLABEL_DETECTOR", DEFAULT_DETECTOR)
        loaded = GroundingDinoDetector(model_id, device=device, dtype=dtype, input_size=input_size)
        return cls(loaded, SegmenterPool(device=str(loaded.device), checkpoints=checkpoints))

    def __call__(
        self,
        image: LoadedImage | bytes | str | os.PathLike,
        prompt: str | Iterable[str] | Prompt,
        box_threshold: float = DEFAULT_BOX_THRESHOLD,
        text_threshold: float = DEFAULT_TEXT_THRESHOLD,
        segmenter: str | None = None,
        label_map: LabelMap | None = None,
    ) -> DetectionResult:
        return self.batch([image], prompt, box_threshold, text_threshold, segmenter, label_map)[0]

    def batch(
        self,
        images: Sequence[LoadedImage | bytes | str | os.PathLike],
        prompt: str | Iterable[str] | Prompt,
        box_threshold: float = DEFAULT_BOX_THRESHOLD,
        text_threshold: float = DEFAULT_TEXT_THRESHOLD,
        segmenter: str | None = None,
        label_map: LabelMap | None = None,
    ) -> list[DetectionResult]:
        """Several images with one prompt: the detector sees the uncached ones in a single forward."""
        loaded = [load_image(image) for image in images]
        prompt = prompt if isinstance(prompt, Prompt) else parse_prompt(prompt)
        label_map = label_map or LabelMap()
        version = self.model_version(segmenter, box_threshold, text_threshold)
        results = []
        for image, raw in zip(loaded, self.detector.raw(loaded, prompt)):
            found = self.detector.filter(raw, image.width, image.height, box_threshold, text_threshold)
            prompt_phrases = [prompt.phrases[min(i, len(prompt.phrases) - 1)] for i in found.phrase_index]
            results.append(DetectionResult(
                width=image.width,
                height=image.height,
                xyxy=found.xyxy,
                scores=found.scores,
                phrases=found.phrases,
                prompt_phrases=prompt_phrases,
                labels=[label_map.label_for(phrase, prompt.explicit_labels) for phrase in prompt_phrases],
                masks=self.segmenters.get(segmenter).segment(image, found.xyxy) if segmenter else None,
                unmapped=label_map.unmapped(prompt.phrases, prompt.explicit_labels),
                model_version=version,
            ))
        return results

    def check_prompt(self, prompt: str | Iterable[str] | Prompt) -> Prompt:
        """The parsed prompt once the detector can read all of it, else ``PromptError`` with the reason: lets a
        caller refuse a prompt before it downloads images or remembers the prompt."""
        prompt = prompt if isinstance(prompt, Prompt) else parse_prompt(prompt)
        self.detector.tokenize(prompt)
        return prompt

    def model_version(self, segmenter: str | None, box_threshold: float, text_threshold: float) -> str:
        """Names what produced a result, so Label Studio can tell predictions of different setups apart."""
        return model_version(self.detector.model_id, segmenter, box_threshold, text_threshold)


def model_version(detector: str, segmenter: str | None, box_threshold: float, text_threshold: float) -> str:
    """``<detector>[+<segmenter>]+box<t>-text<t>``; ``detector`` may be a Hub id or a path (its last part is used).
    Computable without loading any model (Label Studio's /setup asks before the first prediction)."""
    parts = [detector.rstrip("/").split("/")[-1]]
    if segmenter:
        parts.append(segmenter_spec(segmenter).name)
    parts.append(f"box{box_threshold:g}-text{text_threshold:g}")
    return "+".join(parts)
