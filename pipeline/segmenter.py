"""Masks from SAM or MobileSAM in two stages, as ``SamPredictor``: ``embed`` an image once (the heavy encoder,
cached), then ``decode`` any number of prompts against it (the light decoder, masks cached per prompt).

A prompt is one object's box and/or points flagged positive or negative: a detection's box, an edited box, a
click and a Label Studio smart-tool keypoint are all ``MaskPrompt``s.
"""

from __future__ import annotations

import importlib
import pickle
import logging
import threading
import time
import warnings
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from segment_anything import SamPredictor

from .cache import LRUCache
from .device import select_device
from .errors import WeightsError
from .images import LoadedImage
from .registry import SegmenterSpec, segmenter_spec
from .weights import resolve_checkpoint

log = logging.getLogger(__name__)
_EmbeddingEntry = tuple[torch.Tensor, tuple[int, int], tuple[int, int]]  # features, original size, input size


@dataclass(frozen=True)
class MaskPrompt:
    """One object to segment: a box (x0, y0, x1, y1 pixels), points (x, y pixels), or both; ``positive[i]`` says
    whether point i is on the object (True) or off it (False)."""

    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float], ...] = ()
    positive: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        if self.box is None and not self.points:
            raise ValueError("A mask prompt needs a box, points, or both.")
        if len(self.points) != len(self.positive):
            raise ValueError(f"{len(self.points)} points but {len(self.positive)} positive/negative flags.")
        if self.box is not None:
            object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "points", tuple((float(x), float(y)) for x, y in self.points))
        object.__setattr__(self, "positive", tuple(bool(flag) for flag in self.positive))

    @classmethod
    def from_box(cls, xyxy: Sequence[float] | np.ndarray) -> MaskPrompt:
        return cls(box=tuple(float(v) for v in xyxy))

    @property
    def key(self) -> tuple:
        """What the mask cache knows this prompt by: coordinates to 1/100 pixel."""
        box = None if self.box is None else tuple(round(v, 2) for v in self.box)
        return box, tuple((round(x, 2), round(y, 2)) for x, y in self.points), self.positive

    @property
    def shape(self) -> tuple[bool, int]:
        """Prompts of one shape (box or not, number of points) can go through the decoder as one batch."""
        return self.box is not None, len(self.points)


class Segmenter:
    """One SAM-family model with its predictor. The lock keeps concurrent callers off each other's image state."""

    def __init__(self, spec: SegmenterSpec, checkpoint: Path, device: str | None = None,
                 embedding_cache_bytes: int = 512 << 20, mask_cache_bytes: int = 256 << 20):
        self.spec = spec
        self.device = select_device(device)
        with warnings.catch_warnings():  # mobile_sam re-registers timm's tiny_vit models, loudly
            warnings.simplefilter("ignore")
            registry = importlib.import_module(spec.package).sam_model_registry
        try:
            model = registry[spec.model_type](checkpoint=str(checkpoint))
        except (RuntimeError, OSError, KeyError, EOFError, ValueError, pickle.UnpicklingError) as error:
            raise WeightsError(f"{checkpoint} is not a usable {spec.name} checkpoint: {error}") from None
        self.predictor = SamPredictor(model.to(self.device).eval())
        self._embeddings: LRUCache[_EmbeddingEntry] = LRUCache(
            64, embedding_cache_bytes, sizeof=lambda entry: entry[0].element_size() * entry[0].nelement()
        )
        self._masks: LRUCache[tuple[np.ndarray, float]] = LRUCache(4096, mask_cache_bytes,
                                                                    sizeof=lambda entry: entry[0].nbytes)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.spec.name

    def decode(self, image: LoadedImage, prompts: Sequence[MaskPrompt], batched: bool = True) -> np.ndarray:
        """(n, H, W) bool masks, one per prompt. Only prompts not seen before on this image run the decoder, after
        the image's embedding (cached) is loaded. Prompts of one shape go through the decoder together, one call
        each shape: 1.8-3.3x faster than a loop for 10 boxes on CPUs and 2.1-2.4x on a GPU (bench/mask_stage.py);
        ``batched=False`` is that loop, ``SamPredictor.predict`` per prompt."""
        return self.decode_with_scores(image, prompts, batched)[0]

    def decode_with_scores(self, image: LoadedImage, prompts: Sequence[MaskPrompt],
                           batched: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``decode``'s masks and, per mask, the model's own estimate of its IoU (a score for the region)."""
        masks = np.zeros((len(prompts), image.height, image.width), dtype=bool)
        scores = np.zeros(len(prompts), dtype=np.float32)
        todo = []
        for i, prompt in enumerate(prompts):
            cached = self._masks.get((image.sha1, prompt.key))
            if cached is None:
                todo.append(i)
            else:
                masks[i], scores[i] = cached
        if todo:
            with self._lock, torch.inference_mode():
                self.embed(image)
                decoded = self._decode_batched([prompts[i] for i in todo]) if batched \
                    else [self._decode_one(prompts[i]) for i in todo]
            for i, (mask, score) in zip(todo, decoded):
                masks[i], scores[i] = mask, score
                self._masks.put((image.sha1, prompts[i].key), (mask, float(score)))
        return masks, scores

    def embed(self, image: LoadedImage) -> None:
        """Load the image embedding into the predictor, from the cache when this image was embedded before."""
        cached = self._embeddings.get(image.sha1)
        if cached is None:
            started = time.perf_counter()
            self.predictor.set_image(image.array)
            log.info("%s embedded a new %dx%d image in %.2f s (later prompts on it run only the mask decoder).",
                     self.name, image.width, image.height, time.perf_counter() - started)
            self._embeddings.put(
                image.sha1, (self.predictor.features, self.predictor.original_size, self.predictor.input_size)
            )
            return
        self.predictor.reset_image()
        self.predictor.features, self.predictor.original_size, self.predictor.input_size = cached
        self.predictor.is_image_set = True

    def _decode_one(self, prompt: MaskPrompt) -> tuple[np.ndarray, float]:
        points = np.array(prompt.points, dtype=np.float32) if prompt.points else None
        labels = np.array(prompt.positive, dtype=np.int64) if prompt.points else None
        box = np.array(prompt.box, dtype=np.float32) if prompt.box is not None else None
        masks, scores, _ = self.predictor.predict(point_coords=points, point_labels=labels, box=box,
                                                  multimask_output=False)
        return masks[0], float(scores[0])

    def _decode_batched(self, prompts: list[MaskPrompt]) -> list[tuple[np.ndarray, float]]:
        """Prompts grouped by shape, each group one ``predict_torch`` call; (mask, score) in the prompts' order."""
        out: list[tuple[np.ndarray, float] | None] = [None] * len(prompts)
        transform, size, device = self.predictor.transform, self.predictor.original_size, self.predictor.device
        order = sorted(range(len(prompts)), key=lambda i: prompts[i].shape)
        for (has_box, n_points), group in groupby(order, key=lambda i: prompts[i].shape):
            group = list(group)
            boxes = coords = labels = None
            if has_box:
                boxes = transform.apply_boxes_torch(
                    torch.tensor([prompts[i].box for i in group], dtype=torch.float32, device=device), size)
            if n_points:
                coords = transform.apply_coords_torch(
                    torch.tensor([prompts[i].points for i in group], dtype=torch.float32, device=device), size)
                labels = torch.tensor([prompts[i].positive for i in group], dtype=torch.int64, device=device)
            masks, scores, _ = self.predictor.predict_torch(coords, labels, boxes, multimask_output=False)
            for i, mask, score in zip(group, masks[:, 0].cpu().numpy(), scores[:, 0].tolist()):
                out[i] = mask, score
        return out


class SegmenterPool:
    """Segmenters by name, loaded on first use so the choice can change at run time. Each name has its own lock:
    a download of one segmenter never blocks the use of another. A failed load is remembered per name (requests
    fail at once with its reason) until ``forget_failures()``."""

    def __init__(self, device: str | None = None, checkpoints: dict[str, str] | None = None,
                 cache_dir: Path | None = None, offline: bool = False):
        self.device = device
        self.checkpoints = dict(checkpoints or {})
        self.cache_dir = cache_dir or Path.home() / ".cache" / "groundlabel"
        self.offline = offline
        self._loaded: dict[str, Segmenter] = {}
        self._failed: dict[str, str] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Segmenter:
        spec = segmenter_spec(name)
        with self._lock:
            if spec.name in self._loaded:
                return self._loaded[spec.name]
            lock = self._locks.setdefault(spec.name, threading.Lock())
        with lock:
            if spec.name not in self._loaded:
                if spec.name in self._failed:
                    raise WeightsError(self._failed[spec.name])
                try:
                    path = resolve_checkpoint(spec, self.checkpoints.get(spec.name), self.cache_dir, self.offline)
                    segmenter = Segmenter(spec, path, self.device)
                except WeightsError as error:
                    with self._lock:
                        self._failed[spec.name] = str(error)
                    raise
                with self._lock:
                    self._loaded[spec.name] = segmenter
            return self._loaded[spec.name]

    def forget_failures(self) -> None:
        with self._lock:
            self._failed.clear()

    @property
    def failures(self) -> dict[str, str]:
        """Segmenter name -> why its load failed (remembered until ``forget_failures``)."""
        with self._lock:
            return dict(self._failed)

    @property
    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._loaded)
