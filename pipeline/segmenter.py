"""Masks from SAM, MobileSAM, SAM 2.1 or SAM-HQ in two stages, as ``SamPredictor``: ``embed`` an image once (the heavy
encoder, cached), then ``decode`` any number of prompts against it (the light decoder, masks cached per prompt).

A prompt is one object's box and/or points flagged positive or negative: a detection's box, an edited box, a
click and a Label Studio smart-tool keypoint are all ``MaskPrompt``s.
"""

from __future__ import annotations

import importlib
import logging
import pickle
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamPredictor

from .cache import LRUCache
from .device import select_device
from .errors import WeightsError
from .images import LoadedImage
from .registry import SegmenterSpec, segmenter_spec
from .settings import DEFAULT_SEGMENTER_MEMORY
from .weights import load_pretrained, resolve_checkpoint

log = logging.getLogger(__name__)
_EmbeddingEntry = tuple[torch.Tensor, tuple[int, int], tuple[int, int]]  # features, original size, input size
# model inputs holding the features, the image's (height, width), the model's input frame (height, width)
_TransformersEmbedding = tuple[dict, tuple[int, int], tuple[int, int]]
# Prompts per decoder call, and the bytes a call's outputs may take: per prompt the decoder repeats the image
# embedding and upscales features (~16 MB for SAM's 64x64x256 embedding), then the logits are upsampled to the image's
# size as float32 and thresholded (5 bytes a pixel). 900 boxes in one call reached 13 GB at 640x480.
DECODE_CHUNK = 16
DECODE_CHUNK_BYTES = 256 << 20
_PROMPT_OVERHEAD_BYTES = 16 << 20


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


class CachedSegmenter:
    """What every segmenter shares: the embedding cache (per image), the mask cache (per image and prompt), and a
    lock that keeps concurrent callers off the model's image state. Subclasses load a model and implement ``_model``
    (the torch module, for its size), ``_embed`` (the encoder: image -> embedding), ``_use`` (make an embedding the
    current one) and ``_decode_group`` (prompts of one shape -> masks and scores, against the current embedding)."""

    def __init__(
        self,
        spec: SegmenterSpec,
        device: str | None = None,
        embedding_cache_bytes: int = 512 << 20,
        mask_cache_bytes: int = 256 << 20,
    ):
        self.spec = spec
        self.device = select_device(device)
        self._embeddings: LRUCache = LRUCache(64, embedding_cache_bytes, sizeof=_nbytes)
        self._masks: LRUCache[tuple[np.ndarray, float]] = LRUCache(
            4096, mask_cache_bytes, sizeof=lambda entry: entry[0].nbytes
        )
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def weight_bytes(self) -> int:
        return sum(p.element_size() * p.nelement() for p in self._model().parameters())

    def _model(self) -> torch.nn.Module:
        raise NotImplementedError

    def decode(
        self,
        image: LoadedImage,
        prompts: Sequence[MaskPrompt],
        batched: bool = True,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """(n, H, W) bool masks, one per prompt (written into ``out`` when given). Only prompts not seen before on
        this image run the decoder, after the image's embedding (cached) is loaded. Prompts of one shape go through
        the decoder together, in chunks of at most ``decode_chunk`` prompts: 1.8-3.3x faster than a loop for 10
        boxes on CPUs and 2.1-2.4x on a GPU (bench/mask_stage.py), while a chunk's full-size logits stay within
        ``DECODE_CHUNK_BYTES``; ``batched=False`` is that loop, one decoder call per prompt."""
        return self.decode_with_scores(image, prompts, batched, out)[0]

    def decode_with_scores(
        self,
        image: LoadedImage,
        prompts: Sequence[MaskPrompt],
        batched: bool = True,
        out: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``decode``'s masks and, per mask, the model's own estimate of its IoU (a score for the region)."""
        masks = np.zeros((len(prompts), image.height, image.width), dtype=bool) if out is None else out
        if masks.shape != (len(prompts), image.height, image.width):
            raise ValueError(f"out must be {(len(prompts), image.height, image.width)}, got {masks.shape}.")
        scores = np.zeros(len(prompts), dtype=np.float32)
        todo = []
        for i, prompt in enumerate(prompts):
            cached = self._masks.get((image.sha1, prompt.key))
            if cached is None:
                todo.append(i)
            else:
                masks[i], scores[i] = cached
        if todo:
            chunk = decode_chunk(image.width, image.height) if batched else 1
            with self._lock, torch.inference_mode():
                self.embed(image)
                for j, mask, score in self._decode_batched([prompts[i] for i in todo], chunk):
                    i = todo[j]
                    masks[i], scores[i] = mask, score
                    # a copy: a view would keep its whole chunk alive in the cache
                    self._masks.put((image.sha1, prompts[i].key), (mask.copy(), float(score)))
        return masks, scores

    def embed(self, image: LoadedImage) -> None:
        """Make this image's embedding the current one, from the cache when this image was embedded before."""
        cached = self._embeddings.get(image.sha1)
        if cached is None:
            started = time.perf_counter()
            cached = self._embed(image)
            log.info(
                "%s embedded a new %dx%d image in %.2f s (later prompts on it run only the mask decoder).",
                self.name,
                image.width,
                image.height,
                time.perf_counter() - started,
            )
            self._embeddings.put(image.sha1, cached)
        self._use(cached)

    def _embed(self, image: LoadedImage):
        raise NotImplementedError

    def _use(self, embedding) -> None:
        raise NotImplementedError

    def _decode_batched(self, prompts: list[MaskPrompt], chunk: int) -> Iterator[tuple[int, np.ndarray, float]]:
        """(index, mask, score) per prompt: prompts grouped by shape (box or not, number of points), each group in
        decoder calls of at most ``chunk`` prompts (one prompt per call: ``_decode_one``, the plain loop). A chunk's
        masks are yielded before the next chunk runs, so only one chunk's tensors are alive at a time."""
        order = sorted(range(len(prompts)), key=lambda i: prompts[i].shape)
        for _, group in groupby(order, key=lambda i: prompts[i].shape):
            group = list(group)
            for start in range(0, len(group), chunk):
                part = group[start : start + chunk]
                if chunk == 1:
                    masks, scores = self._decode_one(prompts[part[0]])
                    yield part[0], masks, scores
                    continue
                masks, scores = self._decode_group([prompts[i] for i in part])
                yield from ((i, mask, float(score)) for i, mask, score in zip(part, masks, scores))

    def _decode_group(self, prompts: list[MaskPrompt]) -> tuple[np.ndarray, list[float]]:
        """(n, H, W) masks and n scores for prompts of one shape, in one decoder call."""
        raise NotImplementedError

    def _decode_one(self, prompt: MaskPrompt) -> tuple[np.ndarray, float]:
        masks, scores = self._decode_group([prompt])
        return masks[0], float(scores[0])


class Segmenter(CachedSegmenter):
    """SAM 1 and MobileSAM (a checkpoint file each) through ``segment_anything``'s ``SamPredictor``."""

    def __init__(self, spec: SegmenterSpec, checkpoint: Path, device: str | None = None, **cache_sizes: int):
        super().__init__(spec, device, **cache_sizes)
        with warnings.catch_warnings():  # mobile_sam re-registers timm's tiny_vit models, loudly
            warnings.simplefilter("ignore")
            registry = importlib.import_module(spec.package).sam_model_registry
        try:
            model = registry[spec.model_type](checkpoint=str(checkpoint))
        except (RuntimeError, OSError, KeyError, EOFError, ValueError, pickle.UnpicklingError) as error:
            raise WeightsError(f"{checkpoint} is not a usable {spec.name} checkpoint: {error}") from None
        self.predictor = SamPredictor(model.to(self.device).eval())

    def _model(self) -> torch.nn.Module:
        return self.predictor.model

    def _embed(self, image: LoadedImage) -> _EmbeddingEntry:
        self.predictor.set_image(image.array)
        return self.predictor.features, self.predictor.original_size, self.predictor.input_size

    def _use(self, embedding: _EmbeddingEntry) -> None:
        self.predictor.reset_image()
        self.predictor.features, self.predictor.original_size, self.predictor.input_size = embedding
        self.predictor.is_image_set = True

    def _decode_one(self, prompt: MaskPrompt) -> tuple[np.ndarray, float]:
        """``SamPredictor.predict`` for one prompt: the loop ``decode(batched=False)`` compares against."""
        points = np.array(prompt.points, dtype=np.float32) if prompt.points else None
        labels = np.array(prompt.positive, dtype=np.int64) if prompt.points else None
        box = np.array(prompt.box, dtype=np.float32) if prompt.box is not None else None
        masks, scores, _ = self.predictor.predict(
            point_coords=points, point_labels=labels, box=box, multimask_output=False
        )
        return masks[0], float(scores[0])

    def _decode_group(self, prompts: list[MaskPrompt]) -> tuple[np.ndarray, list[float]]:
        transform, size, device = self.predictor.transform, self.predictor.original_size, self.predictor.device
        boxes = coords = labels = None
        if prompts[0].box is not None:
            boxes = transform.apply_boxes_torch(
                torch.tensor([prompt.box for prompt in prompts], dtype=torch.float32, device=device), size
            )
        if prompts[0].points:
            coords = transform.apply_coords_torch(
                torch.tensor([prompt.points for prompt in prompts], dtype=torch.float32, device=device), size
            )
            labels = torch.tensor([prompt.positive for prompt in prompts], dtype=torch.int64, device=device)
        masks, scores, _ = self.predictor.predict_torch(coords, labels, boxes, multimask_output=False)
        return masks[:, 0].cpu().numpy(), scores[:, 0].tolist()


class TransformersSegmenter(CachedSegmenter):
    """SAM 2.1 (``Sam2Model``) and SAM-HQ (``SamHQModel``) through transformers: a Hub id or a local directory. The
    image encoder runs once per image (its features are the cached embedding); prompts are scaled to the model's
    input frame as the processor does and go through the prompt encoder and mask decoder only; masks come back at
    the image's size through the processor's own post-processing."""

    def __init__(
        self, spec: SegmenterSpec, source: str, device: str | None = None, offline: bool = False, **cache_sizes: int
    ):
        import transformers

        super().__init__(spec, device, **cache_sizes)
        family = {"sam2": "Sam2", "sam_hq": "SamHQ"}[spec.model_type]
        self.processor, model = load_pretrained(
            source, offline, getattr(transformers, f"{family}Processor"), getattr(transformers, f"{family}Model")
        )
        self.model = model.to(self.device).eval()
        self._current: _TransformersEmbedding | None = None

    def _model(self) -> torch.nn.Module:
        return self.model

    def _embed(self, image: LoadedImage) -> _TransformersEmbedding:
        inputs = self.processor(images=image.pil, return_tensors="pt")
        features = self.model.get_image_embeddings(inputs["pixel_values"].to(self.device))
        if self.spec.model_type == "sam_hq":  # the last embedding and the ViT's intermediate ones
            features = {"image_embeddings": features[0], "intermediate_embeddings": features[1]}
        else:
            features = {"image_embeddings": features}
        reshaped = inputs.get("reshaped_input_sizes")  # SAM-HQ: the resized image inside the padded input
        frame = tuple(reshaped[0].tolist()) if reshaped is not None else tuple(inputs["pixel_values"].shape[-2:])
        return features, (image.height, image.width), frame

    def _use(self, embedding: _TransformersEmbedding) -> None:
        self._current = embedding

    def _decode_group(self, prompts: list[MaskPrompt]) -> tuple[np.ndarray, list[float]]:
        features, (height, width), (frame_h, frame_w) = self._current
        scale = np.array([frame_w / width, frame_h / height])
        inputs = {}
        if prompts[0].box is not None:
            boxes = np.array([prompt.box for prompt in prompts], dtype=float).reshape(-1, 2, 2) * scale
            inputs["input_boxes"] = torch.tensor(boxes.reshape(1, -1, 4), dtype=torch.float32)
        if prompts[0].points:
            points = np.array([prompt.points for prompt in prompts], dtype=float) * scale
            inputs["input_points"] = torch.tensor(points[None], dtype=torch.float32)
            inputs["input_labels"] = torch.tensor([[list(prompt.positive) for prompt in prompts]], dtype=torch.int64)
        outputs = self.model(**features, **{k: v.to(self.device) for k, v in inputs.items()}, multimask_output=False)
        sizes = [torch.tensor([[height, width]])] + (
            [torch.tensor([[frame_h, frame_w]])] if self.spec.model_type == "sam_hq" else []
        )
        masks = self.processor.post_process_masks(outputs.pred_masks.cpu(), *sizes)[0]
        return masks[:, 0].numpy(), outputs.iou_scores[0, :, 0].float().cpu().tolist()


def decode_chunk(width: int, height: int) -> int:
    """Prompts per decoder call on a ``width`` x ``height`` image: ``DECODE_CHUNK``, fewer on large images so
    that one call's tensors stay within ``DECODE_CHUNK_BYTES`` (4000x3000: 3 prompts a call)."""
    per_prompt = 5 * width * height + _PROMPT_OVERHEAD_BYTES
    return max(1, min(DECODE_CHUNK, DECODE_CHUNK_BYTES // per_prompt))


def _nbytes(embedding) -> int:
    """Bytes held by an embedding entry (tensors, possibly nested in tuples and lists)."""
    if isinstance(embedding, torch.Tensor):
        return embedding.element_size() * embedding.nelement()
    if isinstance(embedding, (tuple, list)):
        return sum(_nbytes(part) for part in embedding)
    return 0


class SegmenterPool:
    """Segmenters by name, loaded on first use so the choice can change at run time. Each name has its own lock:
    a download of one segmenter never blocks the use of another. A failed load is remembered per name (requests
    fail at once with its reason) until ``forget_failures()``. Loaded segmenters' weights stay within
    ``memory_budget`` bytes: loading one more unloads the least recently used first (a request still holding it
    finishes; only the pool forgets it), so trying models one after another cannot exhaust a small machine."""

    def __init__(
        self,
        device: str | None = None,
        checkpoints: dict[str, str] | None = None,
        cache_dir: Path | None = None,
        offline: bool = False,
        memory_budget: int = DEFAULT_SEGMENTER_MEMORY,
    ):
        self.device = device
        self.checkpoints = dict(checkpoints or {})
        self.cache_dir = cache_dir or Path.home() / ".cache" / "groundlabel"
        self.offline = offline
        self.memory_budget = memory_budget
        self._loaded: OrderedDict[str, CachedSegmenter] = OrderedDict()  # least recently used first
        self._failed: dict[str, str] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> CachedSegmenter:
        spec = segmenter_spec(name)
        with self._lock:
            if spec.name in self._loaded:
                self._loaded.move_to_end(spec.name)
                return self._loaded[spec.name]
            lock = self._locks.setdefault(spec.name, threading.Lock())
        with lock:
            with self._lock:
                if spec.name in self._loaded:  # loaded by the caller this one waited for
                    return self._loaded[spec.name]
                if spec.name in self._failed:
                    raise WeightsError(self._failed[spec.name])
            try:
                segmenter = self._load(spec)
            except WeightsError as error:
                with self._lock:
                    self._failed[spec.name] = str(error)
                raise
            with self._lock:
                self._loaded[spec.name] = segmenter
                self._keep_within_budget()
            return segmenter

    def _keep_within_budget(self) -> None:
        """Unload the least recently used segmenters until the weights fit (the newest always stays)."""
        while len(self._loaded) > 1 and sum(s.weight_bytes for s in self._loaded.values()) > self.memory_budget:
            name, _ = self._loaded.popitem(last=False)
            log.info(
                "Unloaded %s to keep segmenter weights within %.1f GB (it loads again when chosen).",
                name,
                self.memory_budget / 1e9,
            )

    @property
    def memory(self) -> dict[str, int]:
        """Bytes of weights per loaded segmenter, least recently used first."""
        with self._lock:
            return {name: segmenter.weight_bytes for name, segmenter in self._loaded.items()}

    def _load(self, spec: SegmenterSpec) -> CachedSegmenter:
        if spec.hub:  # transformers: a local directory (GROUNDLABEL_<NAME>_CHECKPOINT) or the Hub id
            return TransformersSegmenter(spec, self.checkpoints.get(spec.name) or spec.hub, self.device, self.offline)
        path = resolve_checkpoint(spec, self.checkpoints.get(spec.name), self.cache_dir, self.offline)
        return Segmenter(spec, path, self.device)

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
