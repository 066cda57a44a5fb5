"""Loads the pipeline once, on first use, from settings; shared by the UI, the ML backend and the CLI."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from .detector import DEFAULT_DETECTOR
from .engine import GroundingPipeline
from .errors import WeightsError


@dataclass(frozen=True)
class PipelineSettings:
    """Which detector and device to use; segmenter checkpoints by segmenter name (a segmenter without one here
    finds its checkpoint through ``weights.resolve_checkpoint``: environment variable, cache dir, download)."""

    detector: str = DEFAULT_DETECTOR
    device: str | None = None
    dtype: str | None = None
    input_size: int | None = None
    checkpoints: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> PipelineSettings:
        """GROUNDLABEL_DETECTOR, GROUNDLABEL_DEVICE, GROUNDLABEL_DTYPE and GROUNDLABEL_INPUT_SIZE."""
        size = os.environ.get("GROUNDLABEL_INPUT_SIZE")
        return cls(
            detector=os.environ.get("GROUNDLABEL_DETECTOR", DEFAULT_DETECTOR),
            device=os.environ.get("GROUNDLABEL_DEVICE") or None,
            dtype=os.environ.get("GROUNDLABEL_DTYPE") or None,
            input_size=int(size) if size else None,
        )


class LazyPipeline:
    """Builds a ``GroundingPipeline`` on the first ``get()``; remembers a load failure so the UI can explain it."""

    def __init__(self, settings: PipelineSettings | None = None, pipeline: GroundingPipeline | None = None):
        self.settings = settings or PipelineSettings.from_env()
        self._pipeline = pipeline
        self._error: str | None = None
        self._lock = threading.Lock()

    def get(self) -> GroundingPipeline:
        with self._lock:
            if self._pipeline is None:
                try:
                    self._pipeline = GroundingPipeline.from_pretrained(
                        self.settings.detector, device=self.settings.device, dtype=self.settings.dtype,
                        input_size=self.settings.input_size, checkpoints=self.settings.checkpoints,
                    )
                    self._error = None
                except WeightsError as error:
                    self._error = str(error)
                    raise
            return self._pipeline

    @property
    def loaded(self) -> bool:
        return self._pipeline is not None

    def status(self) -> dict:
        """What is loaded and where, or why loading failed: for the UI's status line and /health."""
        if self._pipeline is None:
            return {"detector": self.settings.detector, "loaded": False, "error": self._error, "segmenters": []}
        pipeline = self._pipeline
        return {
            "detector": pipeline.detector.model_id,
            "loaded": True,
            "device": str(pipeline.detector.device),
            "dtype": str(pipeline.detector.dtype).replace("torch.", ""),
            "segmenters": pipeline.segmenters.loaded,
            "error": None,
        }
