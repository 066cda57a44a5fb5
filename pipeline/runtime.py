"""Grounding DINO on OpenVINO for CPUs: ``GROUNDLABEL_RUNTIME=openvino`` (an optional install:
``pip install -r requirements-openvino.txt``).

The model is converted once per processed image size (30-65 s for grounding-dino-tiny on 2 cores: the model takes
Python branches on the image size, so one graph holds for one size) and each converted graph is kept on disk under
the cache directory, keyed by the model's weights, the size and the library versions, so later runs only load it.
Projects whose images share a few sizes (a camera's) gain; a project of many sizes pays a conversion per size.
OpenVINO cannot convert four of the model's operations (``cummax``, ``cummin`` and ``isin`` in the text-mask
preparation, ``logit`` in the box refinement): the text masks depend only on the token ids, so torch computes them
outside the graph and feeds them in, and ``logit`` is written as ``log(x) - log1p(-x)`` while converting. The graph
runs in fp32 (``INFERENCE_PRECISION_HINT``): OpenVINO would pick bf16 on CPUs that have it, which changes boxes.
Tokenizing, preprocessing and post-processing stay as they are, so cached raw outputs mean the same thing.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import threading
import time
import warnings
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import torch

from .cache import LRUCache
from .errors import SettingsError

log = logging.getLogger(__name__)
RUNTIMES = ("torch", "openvino")
_INPUTS = ("pixel_values", "pixel_mask", "input_ids", "attention_mask", "token_type_ids", "text_masks", "position_ids")
_patch_lock = threading.Lock()  # conversion swaps two module attributes for its duration


def check_runtime(name: str, device: torch.device, dtype: torch.dtype) -> str:
    """``name`` when it can run here, else ``SettingsError`` with what to do."""
    if name not in RUNTIMES:
        raise SettingsError(f"Unknown runtime {name!r}; choose one of {', '.join(RUNTIMES)}.")
    if name == "openvino" and (device.type != "cpu" or dtype != torch.float32):
        raise SettingsError(
            "GROUNDLABEL_RUNTIME=openvino runs the detector on the CPU in float32: set "
            "GROUNDLABEL_DEVICE=cpu (and no GROUNDLABEL_DTYPE), or use the default runtime (torch)."
        )
    if name == "openvino" and importlib.util.find_spec("openvino") is None:
        raise SettingsError("GROUNDLABEL_RUNTIME=openvino needs OpenVINO: pip install -r requirements-openvino.txt")
    return name


class OpenVinoGroundingDino:
    """Callable like the model's forward for our inputs -> (logits, pred_boxes), on a converted OpenVINO graph."""

    def __init__(self, model: torch.nn.Module, cache_dir: Path, threads: int | None = None):
        if model.config.model_type != "grounding-dino":
            raise SettingsError(
                f"GROUNDLABEL_RUNTIME=openvino converts Grounding DINO models only, not "
                f"{model.config.model_type}: use the default runtime (torch) for this detector."
            )
        self.model = model
        self.directory = cache_dir / "openvino"
        self.fingerprint = _fingerprint(model)
        self.threads = threads or torch.get_num_threads()
        self._compiled: LRUCache = LRUCache(8)  # by images per forward and processed image size
        self._lock = threading.Lock()

    def path(self, images: int, height: int, width: int) -> Path:
        return self.directory / f"{self.fingerprint}-{images}x{height}x{width}.xml"

    def __call__(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        from transformers.models.grounding_dino import modeling_grounding_dino as gd

        masks, positions = gd.generate_masks_with_special_tokens_and_transfer_map(
            inputs["input_ids"], special_tokens=self.model.model.special_tokens
        )
        feed = {**inputs, "text_masks": masks, "position_ids": positions}
        compiled = self._compiled.get(_size(feed)) or self._load(feed)
        outputs = compiled([feed[name].numpy() for name in _INPUTS])
        return torch.from_numpy(outputs[0]), torch.from_numpy(outputs[1])

    def _load(self, example: dict[str, torch.Tensor]):
        import openvino as ov

        size = _size(example)
        with self._lock:
            compiled = self._compiled.get(size)
            if compiled is None:
                if not self.path(*size).is_file():
                    self._convert(example, self.path(*size))
                compiled = ov.Core().compile_model(
                    str(self.path(*size)),
                    "CPU",
                    {
                        "INFERENCE_PRECISION_HINT": "f32",
                        "INFERENCE_NUM_THREADS": self.threads,
                        "PERFORMANCE_HINT": "LATENCY",
                    },
                )
                self._compiled.put(size, compiled)
        return compiled

    def _convert(self, example: dict[str, torch.Tensor], path: Path) -> None:
        """Trace and save the graph for this processed image size: the model takes Python branches on the image's
        size (Swin's padding, the deformable attention's level shapes), so a graph holds for one size only."""
        import openvino as ov

        started = time.perf_counter()
        height, width = example["pixel_values"].shape[-2:]
        log.info(
            "Converting the detector for OpenVINO at %dx%d (once per processed size; kept in %s)...",
            width,
            height,
            path.parent,
        )
        with _traceable(), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the size branches the cache key accounts for
            graph = ov.convert_model(_Traced(self.model).eval(), example_input=tuple(example[n] for n in _INPUTS))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.stem}.{threading.get_ident()}.partial.xml")
        ov.save_model(graph, str(partial), compress_to_fp16=False)  # fp16 weights would change the outputs
        partial.with_suffix(".bin").replace(path.with_suffix(".bin"))
        partial.replace(path)
        log.info("Converted in %.0f s.", time.perf_counter() - started)


class _Traced(torch.nn.Module):
    """The model's forward with the text masks as inputs (``_traceable`` makes the model read them)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, pixel_mask, input_ids, attention_mask, token_type_ids, text_masks, position_ids):
        _Traced.masks = (text_masks, position_ids)
        out = self.model(
            pixel_values=pixel_values,
            pixel_mask=pixel_mask,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
        )
        return out.logits, out.pred_boxes


@contextlib.contextmanager
def _traceable() -> Iterator[None]:
    """While converting: the text masks come from ``_Traced``'s inputs, and ``logit`` is made of ops OpenVINO has."""
    from transformers.models.grounding_dino import modeling_grounding_dino as gd

    def logit(x: torch.Tensor, eps: float | None = None) -> torch.Tensor:
        if eps is not None:
            x = x.clamp(eps, 1 - eps)
        return torch.log(x) - torch.log1p(-x)

    with _patch_lock:
        masks_function, logit_function = gd.generate_masks_with_special_tokens_and_transfer_map, torch.special.logit
        gd.generate_masks_with_special_tokens_and_transfer_map = lambda *args, **kwargs: _Traced.masks
        torch.special.logit = logit
        try:
            yield
        finally:
            gd.generate_masks_with_special_tokens_and_transfer_map, torch.special.logit = masks_function, logit_function


def _size(inputs: dict[str, torch.Tensor]) -> tuple[int, int, int]:
    """(images, height, width) of a forward's pixels: what a converted graph is fixed to."""
    images, _, height, width = inputs["pixel_values"].shape
    return images, height, width


def _fingerprint(model: torch.nn.Module) -> str:
    """Changes when the model (its config or any weight) or the converting libraries change: a checksum of the
    weights themselves, so a Hub id, a local directory and a retrained copy are all told apart."""
    digest = hashlib.sha1(f"{version('openvino')} {version('transformers')} {version('torch')}".encode())
    digest.update(model.config.to_json_string().encode())
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            digest.update(f"{name} {tuple(tensor.shape)} {float(tensor.double().sum()):.10e}".encode())
    return f"{model.config.model_type}-{digest.hexdigest()[:16]}"
