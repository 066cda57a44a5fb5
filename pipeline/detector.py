"""Grounding DINO through transformers: one forward per (image, prompt), thresholds applied afterwards."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

from .cache import LRUCache
from .device import select_device, select_dtype
from .errors import PromptError, WeightsError
from .images import LoadedImage
from .prompts import Prompt

DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"
DETECTOR_ALIASES = {
    "grounding-dino-tiny": "IDEA-Research/grounding-dino-tiny",
    "grounding-dino-base": "IDEA-Research/grounding-dino-base",
}
# Grounding DINO's tokenizer ids for the phrase separator and the special tokens around the text.
_SEPARATOR_IDS = (101, 102, 1012, 1029)


@dataclass(frozen=True)
class RawDetections:
    """What one forward pass produced, kept so that any thresholds can be applied later without the model."""

    logits: torch.Tensor  # (queries, max_text_len), CPU float32
    boxes: torch.Tensor  # (queries, 4) normalised cxcywh, CPU float32
    input_ids: torch.Tensor  # (tokens,)
    phrase_of_token: torch.Tensor  # (max_text_len,) index of the prompt phrase a token belongs to, -1 for none

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in (self.logits, self.boxes, self.input_ids))


@dataclass(frozen=True)
class FilteredDetections:
    xyxy: np.ndarray  # (n, 4) pixels in the upright image
    scores: np.ndarray  # (n,)
    phrases: list[str]  # tokens above the text threshold, as the detector read them
    phrase_index: np.ndarray  # (n,) which prompt phrase each box belongs to


class GroundingDinoDetector:
    """Any ``AutoModelForZeroShotObjectDetection`` checkpoint (Hub id or local directory)."""

    def __init__(
        self,
        model_id: str = DEFAULT_DETECTOR,
        device: str | None = None,
        dtype: str | None = None,
        input_size: int | None = None,
        cache_items: int = 64,
    ):
        self.model_id = DETECTOR_ALIASES.get(model_id, model_id)
        self.device = select_device(device)
        self.dtype = select_dtype(self.device, dtype)
        self.input_size = input_size
        try:
            self.processor = AutoProcessor.from_pretrained(self.model_id)
            model = AutoModelForZeroShotObjectDetection.from_pretrained(self.model_id)
        except (OSError, ValueError) as error:
            raise WeightsError(
                f"Could not load the detector {self.model_id!r}: {error}. On a machine with internet, a Hub id such as "
                f"{DEFAULT_DETECTOR!r} is downloaded once into the Hugging Face cache; offline, pass a local directory "
                "made with save_pretrained (GROUNDLABEL_DETECTOR=/path/to/dir)."
            ) from None
        self.model = model.to(self.device, self.dtype).eval()
        self.max_text_len = int(getattr(self.model.config, "max_text_len", 256))
        self._raw_cache: LRUCache[RawDetections] = LRUCache(cache_items, sizeof=lambda raw: raw.nbytes)
        self._lock = threading.Lock()

    def raw(self, images: list[LoadedImage], prompt: Prompt) -> list[RawDetections]:
        """The model's raw outputs for these images and this prompt. Cached ones come from the cache; the others
        go through the model together in one batch (faster per image on a GPU)."""
        keys = [(image.sha1, prompt.text, self.model_id, self.input_size) for image in images]
        found = [self._raw_cache.get(key) for key in keys]
        missing = [i for i, raw in enumerate(found) if raw is None]
        if missing:
            for i, raw in zip(missing, self._forward([images[i] for i in missing], prompt)):
                self._raw_cache.put(keys[i], raw)
                found[i] = raw
        return found

    def _forward(self, images: list[LoadedImage], prompt: Prompt) -> list[RawDetections]:
        input_ids, phrase_of_token = self.tokenize(prompt)
        kwargs = {"size": {"shortest_edge": self.input_size, "longest_edge": self.input_size * 1333 // 800}} if self.input_size else {}
        inputs = self.processor(images=[image.pil for image in images], text=[prompt.text] * len(images), return_tensors="pt", **kwargs)
        inputs = {
            name: value.to(self.device, self.dtype if value.is_floating_point() else value.dtype)
            for name, value in inputs.items()
        }
        with self._lock, torch.inference_mode():
            outputs = self.model(**inputs)
        return [
            RawDetections(
                logits=outputs.logits[i].float().cpu(),
                boxes=outputs.pred_boxes[i].float().cpu(),
                input_ids=input_ids,
                phrase_of_token=phrase_of_token,
            )
            for i in range(len(images))
        ]

    def filter(
        self, raw: RawDetections, width: int, height: int, box_threshold: float, text_threshold: float
    ) -> FilteredDetections:
        """Apply thresholds to cached raw outputs with transformers' own post-processing (no model run)."""
        outputs = SimpleNamespace(logits=raw.logits[None], pred_boxes=raw.boxes[None])
        result = self.processor.post_process_grounded_object_detection(
            outputs, raw.input_ids[None], threshold=box_threshold, text_threshold=text_threshold,
            target_sizes=[(height, width)],
        )[0]
        probs = raw.logits.sigmoid()
        kept = probs[probs.max(dim=-1).values > box_threshold]
        xyxy = result["boxes"].numpy().astype(np.float32)
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
        return FilteredDetections(
            xyxy=xyxy,
            scores=result["scores"].numpy().astype(np.float32),
            phrases=[text.strip() for text in result["text_labels"]],
            phrase_index=_best_phrase(kept, raw.phrase_of_token),
        )

    def tokenize(self, prompt: Prompt) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt's token ids and, per token position, its phrase number; ``PromptError`` when the text encoder
        cannot read the prompt as written: too many tokens, or a phrase it reads as nothing (which would shift
        every later phrase's boxes onto the wrong label)."""
        input_ids = self.processor.tokenizer(prompt.text, return_tensors="pt")["input_ids"][0]
        if len(input_ids) > self.max_text_len:
            raise PromptError(
                f"The prompt is {len(input_ids)} tokens long; the detector reads at most {self.max_text_len}. "
                "Use fewer or shorter phrases, or run several prompts."
            )
        phrase_of_token = _phrase_of_token(input_ids, self.max_text_len)
        if int(phrase_of_token.max()) + 1 != len(prompt.phrases):
            unreadable = [phrase for phrase in prompt.phrases if not self.processor.tokenizer.tokenize(phrase)]
            raise PromptError(
                f"The prompt phrase(s) {', '.join(map(repr, unreadable or prompt.phrases))} have no characters the "
                "detector can read: write them with letters, digits or emoji."
            )
        return input_ids, phrase_of_token


def _phrase_of_token(input_ids: torch.Tensor, length: int) -> torch.Tensor:
    """Token position -> prompt phrase number, counting phrases between separator tokens."""
    phrase_of_token = torch.full((length,), -1, dtype=torch.long)
    phrase, in_phrase = 0, False
    for position, token in enumerate(input_ids.tolist()[:length]):
        if token in _SEPARATOR_IDS:
            phrase += in_phrase
            in_phrase = False
        else:
            phrase_of_token[position] = phrase
            in_phrase = True
    return phrase_of_token


def _best_phrase(probs: torch.Tensor, phrase_of_token: torch.Tensor) -> np.ndarray:
    """For each box, the prompt phrase whose tokens it scores highest on: a label that never depends on
    the text threshold, unlike the decoded phrase text."""
    phrase_count = int(phrase_of_token.max()) + 1
    if phrase_count <= 0 or len(probs) == 0:
        return np.zeros(len(probs), dtype=np.int64)
    per_phrase = torch.stack(
        [probs[:, phrase_of_token == phrase].max(dim=-1).values for phrase in range(phrase_count)], dim=-1
    )
    return per_phrase.argmax(dim=-1).numpy()
