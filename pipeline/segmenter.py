"""Box-prompted masks with SAM or MobileSAM; image embeddings and masks cached so prompts and thresholds reuse them."""

from __future__ import annotations

import importlib
import os
import pickle
import threading
import warnings

import numpy as np
import torch
from segment_anything import SamPredictor

from .cache import LRUCache
from .device import select_device
from .errors import WeightsError
from .images import LoadedImage
from .weights import SegmenterSpec, resolve_checkpoint, segmenter_spec

_EmbeddingEntry = tuple[torch.Tensor, tuple[int, int], tuple[int, int]]  # features, original size, input size


class Segmenter:
    """One SAM-family model with its predictor. The lock keeps concurrent callers off each other's image state."""

    def __init__(
        self,
        name: str,
        checkpoint: str | os.PathLike | None = None,
        device: str | None = None,
        embedding_cache_bytes: int = 512 << 20,
        mask_cache_bytes: int = 256 << 20,
    ):
        self.spec: SegmenterSpec = segmenter_spec(name)
        self.device = select_device(device)
        path = resolve_checkpoint(self.spec, checkpoint)
        with warnings.catch_warnings():  # mobile_sam re-registers timm's tiny_vit models, loudly
            warnings.simplefilter("ignore")
            registry = importlib.import_module(self.spec.package).sam_model_registry
        try:
            model = registry[self.spec.model_type](checkpoint=str(path))
        except (RuntimeError, OSError, KeyError, EOFError, ValueError, pickle.UnpicklingError) as error:
            raise WeightsError(f"{path} is not a usable {self.spec.name} checkpoint: {error}") from None
        self.predictor = SamPredictor(model.to(self.device).eval())
        self._embeddings: LRUCache[_EmbeddingEntry] = LRUCache(
            64, embedding_cache_bytes, sizeof=lambda entry: entry[0].element_size() * entry[0].nelement()
        )
        self._masks: LRUCache[np.ndarray] = LRUCache(4096, mask_cache_bytes, sizeof=lambda mask: mask.nbytes)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.spec.name

    def segment(self, image: LoadedImage, xyxy: np.ndarray) -> np.ndarray:
        """(n, 4) pixel boxes -> (n, H, W) bool masks. Only boxes not seen before on this image run the decoder."""
        masks = np.zeros((len(xyxy), image.height, image.width), dtype=bool)
        todo = []
        for i, box in enumerate(xyxy):
            cached = self._masks.get(self._mask_key(image, box))
            if cached is None:
                todo.append(i)
            else:
                masks[i] = cached
        if todo:
            with self._lock:
                self._set_image(image)
                for i in todo:
                    predicted, _, _ = self.predictor.predict(box=xyxy[i], multimask_output=False)
                    masks[i] = predicted[0]
                    self._masks.put(self._mask_key(image, xyxy[i]), predicted[0])
        return masks

    def _set_image(self, image: LoadedImage) -> None:
        """Load the image embedding into the predictor, from the cache when this image was embedded before."""
        cached = self._embeddings.get(image.sha1)
        if cached is None:
            self.predictor.set_image(image.array)
            self._embeddings.put(
                image.sha1, (self.predictor.features, self.predictor.original_size, self.predictor.input_size)
            )
            return
        features, original_size, input_size = cached
        self.predictor.reset_image()
        self.predictor.features, self.predictor.original_size, self.predictor.input_size = (
            features, original_size, input_size,
        )
        self.predictor.is_image_set = True

    def _mask_key(self, image: LoadedImage, box: np.ndarray) -> tuple:
        return (image.sha1, tuple(np.round(box, 2).tolist()))


class SegmenterPool:
    """Segmenters by name, loaded on first use so the choice can change at run time."""

    def __init__(self, device: str | None = None, checkpoints: dict[str, str] | None = None):
        self.device = device
        self.checkpoints = checkpoints or {}
        self._loaded: dict[str, Segmenter] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Segmenter:
        spec = segmenter_spec(name)
        with self._lock:
            if spec.name not in self._loaded:
                self._loaded[spec.name] = Segmenter(spec.name, self.checkpoints.get(spec.name), self.device)
            return self._loaded[spec.name]

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded)
