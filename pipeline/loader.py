"""Loads the pipeline once, on first use, from settings; shared by the UI, the ML backend and the CLI. Importing it
costs no torch: the app and the ML backend start (and answer /health) before the models are imported."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .errors import WeightsError
from .settings import PipelineSettings

if TYPE_CHECKING:
    from .engine import GroundingPipeline


class LazyPipeline:
    """Builds a ``GroundingPipeline`` on the first ``get()``. A failed load is remembered: later calls fail at once
    with the same reason (a request must not wait for another download attempt that cannot work) until
    ``retry()`` (the UI's *Load models*); the UI and /health show the reason (``status``)."""

    def __init__(self, settings: PipelineSettings | None = None, pipeline: GroundingPipeline | None = None):
        self.settings = settings or (pipeline.settings if pipeline else PipelineSettings())
        self._pipeline = pipeline
        self._error: str | None = None
        self._lock = threading.Lock()

    def get(self) -> GroundingPipeline:
        with self._lock:
            if self._pipeline is None:
                if self._error is not None:
                    raise WeightsError(self._error)
                from .engine import GroundingPipeline

                try:
                    self._pipeline = GroundingPipeline.from_settings(self.settings)
                except WeightsError as error:
                    self._error = str(error)
                    raise
            return self._pipeline

    def retry(self) -> None:
        """Forget remembered load failures (detector and segmenters): the next use tries to load again."""
        with self._lock:
            self._error = None
            if self._pipeline is not None:
                self._pipeline.segmenters.forget_failures()

    @property
    def loaded(self) -> bool:
        return self._pipeline is not None

    def status(self) -> dict:
        """What is loaded and where, or why loading failed: for the UI's status line and /health. The detector is
        named by its resolved spec (``detector``: the name model_version carries; ``source``: what loads), the
        same before and after loading."""
        spec = self.settings.detector_spec
        detector = {"detector": spec.name, "source": spec.load_from, **_text_threshold(spec.reads_text_threshold)}
        if self._pipeline is None:
            return {**detector, "loaded": False, "error": self._error, "segmenters": [], "segmenter_errors": {}}
        pipeline = self._pipeline
        other = pipeline.other_detector
        return {
            **detector,
            "loaded": True,
            "other_detector": other.name if other else None,
            "device": str(pipeline.detector.device),
            "dtype": str(pipeline.detector.dtype).replace("torch.", ""),
            "segmenters": pipeline.segmenters.loaded,
            "segmenter_memory": pipeline.segmenters.memory,  # bytes of weights per loaded segmenter
            "segmenter_budget": pipeline.segmenters.memory_budget,
            "segmenter_errors": pipeline.segmenters.failures,
            "error": None,
        }


def _text_threshold(reads: bool) -> dict:
    """Whether the detector reads the text threshold, and when not, the sentence that says so."""
    note = (
        {}
        if reads
        else {
            "text_threshold_note": "This detector scores whole prompt phrases: the text threshold "
            "(TEXT_THRESHOLD, the UI's slider) is ignored."
        }
    )
    return {"reads_text_threshold": reads, **note}
