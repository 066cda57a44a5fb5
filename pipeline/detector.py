"""Grounding DINO through transformers, in the stages of transformers' pipelines: ``preprocess`` (per image),
``_forward`` (the only model run, cached per image, prompt, model and input size) and ``postprocess`` (thresholds
on cached raw outputs, no model).

Only images of the same processed size share a forward: padding changes a padded image's outputs, so a batch of
mixed sizes would make a cached result depend on what else was in its batch. Two callers asking for the same
(image, prompt) at once share one forward: the second waits for the first's result.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

from .cache import LRUCache
from .device import select_device, select_dtype
from .errors import PromptError
from .images import LoadedImage
from .options import Options
from .prompts import Prompt
from .registry import DEFAULT_DETECTOR, detector_source
from .runtime import OpenVinoGroundingDino, check_runtime
from .weights import load_pretrained

RAW_CACHE_BYTES = 256 * 2**20  # raw outputs kept per detector (Grounding DINO: ~1 MB per image and prompt)
# Grounding DINO's tokenizer ids for the phrase separator and the special tokens around the text.
_SEPARATOR_IDS = (101, 102, 1012, 1029)


@dataclass(frozen=True)
class TokenizedPrompt:
    """A prompt as the text encoder reads it: token ids and, per token position, its prompt phrase (-1: none). For
    the detectors that score whole phrases, one query per phrase (then per example box) and its ``Prompt.names``
    index (-1: a negative example)."""

    prompt: Prompt
    input_ids: torch.Tensor  # (tokens,)
    phrase_of_token: torch.Tensor  # (max_text_len,)


@dataclass(frozen=True)
class RawDetections:
    """What one forward pass produced, kept so that any thresholds can be applied later without the model."""

    logits: torch.Tensor  # (queries, tokens or phrases) before the sigmoid, CPU float32
    boxes: torch.Tensor  # (queries, 4) normalised (cxcywh; SAM 3: corners), CPU float32
    tokens: TokenizedPrompt
    masks: torch.Tensor | None = None  # (queries, h, w) low-resolution mask logits (SAM 3)

    @property
    def nbytes(self) -> int:
        tensors = (self.logits, self.boxes) if self.masks is None else (self.logits, self.boxes, self.masks)
        return sum(t.element_size() * t.nelement() for t in tensors)


@dataclass(frozen=True)
class FilteredDetections:
    xyxy: np.ndarray  # (n, 4) pixels in the upright image
    scores: np.ndarray  # (n,)
    phrases: list[str]  # whole words of the box's prompt phrase read above the text threshold
    phrase_index: np.ndarray  # (n,) which prompt phrase each box belongs to
    masks: np.ndarray | None = None  # (n, height, width) bool, from detectors that make masks (SAM 3)


class CachedDetector:
    """What every detector family shares: its model (registered name, Hub id or local directory) on one device, and
    raw outputs cached per (image, prompt, model, input size) so thresholds re-filter without a model run.

    A family implements ``tokenize`` (the prompt as its text encoder reads it, ``PromptError`` when it cannot),
    ``preprocess`` (one image), ``_forward`` (the only model run, images of one processed size) and ``postprocess``
    (thresholds on cached raw outputs). What a family reads (a text threshold, its own masks) is its entry in
    ``pipeline.registry.FAMILIES``.
    """

    loaders: tuple = (AutoProcessor, AutoModelForZeroShotObjectDetection)

    def __init__(
        self,
        model_id: str = DEFAULT_DETECTOR,
        device: str | None = None,
        dtype: str | None = None,
        input_size: int | None = None,
        cache_items: int = 64,
        offline: bool = False,
    ):
        self.model_id = detector_source(model_id)
        self.device = select_device(device)
        self.dtype = select_dtype(self.device, dtype)
        self.input_size = input_size
        self.processor, model = load_pretrained(self.model_id, offline, *self.loaders)
        self.model = model.to(self.device, self.dtype).eval()
        self._raw_cache: LRUCache[RawDetections] = LRUCache(cache_items, RAW_CACHE_BYTES, lambda raw: raw.nbytes)
        self._tokens: LRUCache[TokenizedPrompt] = LRUCache(256)
        self._in_flight: dict[Hashable, Future] = {}
        self._in_flight_lock = threading.Lock()
        self._model_lock = threading.Lock()

    def tokenize(self, prompt: Prompt) -> TokenizedPrompt:
        raise NotImplementedError

    def preprocess(self, image: LoadedImage) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _forward(self, pixels: list[dict[str, torch.Tensor]], tokens: TokenizedPrompt) -> list[RawDetections]:
        raise NotImplementedError

    def postprocess(self, raw: RawDetections, width: int, height: int, options: Options) -> FilteredDetections:
        raise NotImplementedError

    def _group_key(self, pixels: dict) -> tuple:
        """Preprocessed images with equal keys share a forward: those of one processed size."""
        return tuple(pixels["pixel_values"].shape)

    def _inputs(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Model inputs on the model's device, floating ones in its dtype."""
        return {
            name: value.to(self.device, self.dtype if value.is_floating_point() else value.dtype)
            for name, value in inputs.items()
        }

    # --- cached entry point ---------------------------------------------------------------------------------

    def raw(self, images: list[LoadedImage], prompt: Prompt) -> list[RawDetections]:
        """The model's raw outputs for these images and this prompt. Cached ones come from the cache, ones another
        caller is computing right now are waited for, and the rest go through the model, one forward per
        processed size."""
        tokens = self.tokenize(prompt)
        keys = [(image.sha1, prompt.key, self.model_id, self.input_size) for image in images]
        found: list[RawDetections | None] = [None] * len(keys)
        mine: dict[Hashable, Future] = {}
        theirs: dict[int, Future] = {}
        with self._in_flight_lock:
            for i, key in enumerate(keys):
                if key in mine:
                    continue
                found[i] = self._raw_cache.get(key)
                if found[i] is not None:
                    continue
                if key in self._in_flight:
                    theirs[i] = self._in_flight[key]
                else:
                    mine[key] = self._in_flight[key] = Future()
        try:
            self._compute({key: images[keys.index(key)] for key in mine}, tokens, mine)
        finally:
            with self._in_flight_lock:
                for key, future in mine.items():
                    self._in_flight.pop(key, None)
                    if not future.done():
                        future.set_exception(RuntimeError("The detector run for this image was abandoned."))
        for i, key in enumerate(keys):
            if found[i] is None:
                found[i] = (mine[key] if key in mine else theirs[i]).result()
        return found

    def _compute(
        self, images: dict[Hashable, LoadedImage], tokens: TokenizedPrompt, futures: dict[Hashable, Future]
    ) -> None:
        groups: dict[tuple, list[tuple[Hashable, dict]]] = {}
        for key, image in images.items():
            pixels = self.preprocess(image)
            groups.setdefault(self._group_key(pixels), []).append((key, pixels))
        for group in groups.values():
            try:
                outputs = self._forward([pixels for _, pixels in group], tokens)
            except BaseException as error:
                for key, _ in group:
                    futures[key].set_exception(error)
                raise
            for (key, _), raw in zip(group, outputs):
                self._raw_cache.put(key, raw)
                futures[key].set_result(raw)


class GroundingDinoDetector(CachedDetector):
    """Grounding DINO and MM-Grounding-DINO: a score per (query, prompt token); a box's phrase is the prompt phrase
    whose tokens it scores highest on, and the text threshold picks which of its words are shown."""

    def __init__(
        self,
        model_id: str = DEFAULT_DETECTOR,
        device: str | None = None,
        dtype: str | None = None,
        input_size: int | None = None,
        cache_items: int = 64,
        offline: bool = False,
        runtime: str = "torch",
        cache_dir: Path | None = None,
    ):
        # a wrong runtime setting fails before the download
        self.runtime = check_runtime(runtime, select_device(device), select_dtype(select_device(device), dtype))
        super().__init__(model_id, device, dtype, input_size, cache_items, offline)
        self._openvino = (
            OpenVinoGroundingDino(self.model, cache_dir or Path.home() / ".cache" / "groundlabel")
            if runtime == "openvino"
            else None
        )
        self.max_text_len = int(getattr(self.model.config, "max_text_len", 256))

    # --- stages ---------------------------------------------------------------------------------------------

    def tokenize(self, prompt: Prompt) -> TokenizedPrompt:
        """The prompt as the text encoder reads it (cached per prompt text); ``PromptError`` when it cannot read
        the prompt as written: too many tokens, or a phrase it reads as nothing (which would shift every later
        phrase's boxes onto the wrong label)."""
        cached = self._tokens.get(prompt.text)
        if cached is not None:
            return cached
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
        tokens = TokenizedPrompt(prompt, input_ids, phrase_of_token)
        self._tokens.put(prompt.text, tokens)
        return tokens

    def preprocess(self, image: LoadedImage) -> dict[str, torch.Tensor]:
        """One image resized and normalised as the model expects (``input_size`` short side when set)."""
        size = (
            {"size": {"shortest_edge": self.input_size, "longest_edge": self.input_size * 1333 // 800}}
            if self.input_size
            else {}
        )
        return self.processor.image_processor(images=[image.pil], return_tensors="pt", **size)

    def _forward(self, pixels: list[dict[str, torch.Tensor]], tokens: TokenizedPrompt) -> list[RawDetections]:
        """One forward over images of one processed size (no padding between them) and one prompt."""
        text = self.processor.tokenizer([tokens.prompt.text] * len(pixels), return_tensors="pt")
        inputs = self._inputs({**text, **{name: torch.cat([p[name] for p in pixels]) for name in pixels[0]}})
        with self._model_lock, torch.inference_mode():
            if self._openvino is not None:
                logits, boxes = self._openvino(inputs)
            else:
                outputs = self.model(**inputs)
                logits, boxes = outputs.logits, outputs.pred_boxes
        return [RawDetections(logits[i].float().cpu(), boxes[i].float().cpu(), tokens) for i in range(len(pixels))]

    def postprocess(self, raw: RawDetections, width: int, height: int, options: Options) -> FilteredDetections:
        """Apply thresholds to cached raw outputs (no model run). Boxes and scores as transformers'
        ``post_process_grounded_object_detection`` computes them (a test holds the two equal); its per-box label
        decoding, which we do not use, took two thirds of its time with 900 candidate boxes."""
        probs = raw.logits.sigmoid()
        scores = probs.max(dim=-1).values
        keep = scores > options.box_threshold
        kept = probs[keep]
        xyxy = pixel_boxes(raw.boxes[keep], (width, height), (width, height))
        phrase_index = _best_phrase(kept, raw.tokens.phrase_of_token)
        return FilteredDetections(
            xyxy=xyxy,
            scores=scores[keep].numpy().astype(np.float32),
            phrases=self._phrase_texts(kept, phrase_index, raw.tokens, options.text_threshold),
            phrase_index=phrase_index,
        )

    def _phrase_texts(
        self, probs: torch.Tensor, phrase_index: np.ndarray, tokens: TokenizedPrompt, threshold: float
    ) -> list[str]:
        """Per box, the words of its prompt phrase that it scores above ``threshold`` on, whole words only (a
        word counts when any of its pieces does): never a special token or a stray '##' piece. Boxes that pass
        the same words share one decode."""
        out = [""] * len(phrase_index)
        for phrase in np.unique(phrase_index).tolist():
            rows = np.flatnonzero(phrase_index == phrase)
            words, of_phrase = self._words(tokens, phrase), probs[rows]
            passed = (
                torch.stack([of_phrase[:, span].max(dim=-1).values > threshold for span, _ in words], dim=-1).numpy()
                if words
                else np.zeros((len(rows), 0), dtype=bool)
            )
            texts: dict[bytes, str] = {}
            for row, keep in zip(rows.tolist(), passed):
                key = keep.tobytes()
                if key not in texts:
                    chosen = [token for (_, ids), use in zip(words, keep) if use for token in ids]
                    texts[key] = self.processor.tokenizer.decode(chosen, skip_special_tokens=True).strip()
                out[row] = texts[key]
        return out

    def _words(self, tokens: TokenizedPrompt, phrase: int) -> list[tuple[list[int], list[int]]]:
        """Prompt phrase ``phrase`` as whole words: (token positions, token ids) per word, '##' pieces joined."""
        positions = (tokens.phrase_of_token == phrase).nonzero().flatten().tolist()
        positions = [p for p in positions if p < len(tokens.input_ids)]
        ids = [int(tokens.input_ids[p]) for p in positions]
        words: list[tuple[list[int], list[int]]] = []
        for position, token_id, piece in zip(positions, ids, self.processor.tokenizer.convert_ids_to_tokens(ids)):
            if piece.startswith("##") and words:
                words[-1][0].append(position)
                words[-1][1].append(token_id)
            else:
                words.append(([position], [token_id]))
        return words


def pixel_boxes(cxcywh: torch.Tensor, scale: tuple[float, float], clip: tuple[int, int] | None) -> np.ndarray:
    """Normalised (cx, cy, w, h) boxes -> (x1, y1, x2, y2) pixels: times ``scale`` (x, y), clipped to the image
    size ``clip`` (width, height) unless None."""
    cx, cy, w, h = cxcywh.reshape(-1, 4).unbind(-1)
    corners = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1) * torch.tensor([*scale, *scale])
    xyxy = corners.numpy().astype(np.float32)
    return xyxy if clip is None else clip_boxes(xyxy, *clip)


def clip_boxes(xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel corners clipped to the image, in place."""
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
    return xyxy


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
