"""The UI's view of the shared models: loading with progress, a status panel with fixes, the Spaces GPU hook."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from pipeline import SEGMENTERS, GroundingPipeline, GroundlabelError, LazyPipeline, Options, WeightsError
from pipeline.device import select_device
from pipeline.testing.models import RANDOM_WEIGHTS_MARKER
from sync.settings import DEFAULT_SEGMENTER

try:  # present on Hugging Face Spaces only
    import spaces
except ImportError:
    spaces = None

ProgressFn = Callable[..., object]


def on_gpu(fn: Callable) -> Callable:
    """``spaces.GPU(fn)`` on Hugging Face Spaces (ZeroGPU lends a GPU per call); ``fn`` itself everywhere else."""
    return fn if spaces is None else spaces.GPU(fn)


def segmenter_choices() -> list[str]:
    """The real segmenters plus any registered at run time (tests register a tiny one)."""
    return list(SEGMENTERS)


class ModelHub:
    """Wraps the process-wide ``LazyPipeline``: loads with progress and says what is loaded or why not.
    ``default_segmenter`` is the ML backend's choice (GROUNDLABEL_SEGMENTER, USE_SAM, USE_MOBILE_SAM), else
    MobileSAM: fast on a CPU."""

    def __init__(self, lazy: LazyPipeline, default_segmenter: str | None = DEFAULT_SEGMENTER, note: str = ""):
        self.lazy = lazy
        self.default_segmenter = default_segmenter or DEFAULT_SEGMENTER
        self.note = note  # shown above the models' status, e.g. that the demo runs toy models

    def load(
        self, segmenter: str | None, progress: ProgressFn, retry: bool = False, detector: str | None = None
    ) -> GroundingPipeline:
        """The pipeline with ``segmenter`` loaded (not when ``detector``, None for the app's, makes its own masks:
        SAM 3); the first call downloads/loads weights under a progress bar. A load that failed before fails again
        at once with its reason, unless ``retry`` (*Load models*)."""
        if retry:
            self.lazy.retry()
        if not self.lazy.loaded:
            progress(
                0.05, desc=f"Loading detector {self.lazy.settings.detector_spec.name} (the first run downloads it)"
            )
        pipeline = self.lazy.get()
        if detector:
            progress(0.3, desc=f"Loading detector {detector} (its first use downloads it)")
            pipeline.detector_for(Options(detector=detector))
        if (
            segmenter
            and segmenter not in pipeline.segmenters.loaded
            and not pipeline.spec_for(Options(detector=detector)).makes_masks
        ):
            progress(0.4, desc=f"Loading segmenter {segmenter}")
            pipeline.segmenters.get(segmenter)  # a failure is remembered there, for the status line
        return pipeline

    def status_markdown(self) -> str:
        """One line per model: loaded where, loads on first use, or why it failed and how to fix it."""
        status = self.lazy.status()
        lines = [self.note] if self.note else []
        if (Path(status["source"]) / RANDOM_WEIGHTS_MARKER).is_file():
            lines.append(
                "**Random weights** (from `python -m pipeline.testing write`): every part of the app works, "
                "but the boxes and masks mean nothing."
            )
        source = f" from `{status['source']}`" if status["source"] != status["detector"] else ""
        lines.append(f"**Detector** `{status['detector']}`{source} " + self._detector_state(status))
        if status.get("other_detector"):
            lines.append(
                f"**Also loaded** `{status['other_detector']}` (chosen in a Detector dropdown; only the last "
                "one chosen stays loaded beside the app's)"
            )
        loaded, errors = set(status["segmenters"]), status["segmenter_errors"]
        for name in segmenter_choices():
            if name in loaded:
                size = status["segmenter_memory"].get(name, 0) / 2**30
                lines.append(
                    f"**{name}** loaded ({size:.2f} GiB of the {status['segmenter_budget'] / 2**30:.1f} GiB "
                    "kept for segmenters; the least recently used is unloaded first)"
                )
            elif name in errors:
                lines.append(f"<span class='gl-bad'>**{name}** failed</span>: {html.escape(errors[name])}")
        if not loaded and not errors:
            lines.append("Segmenters load on first use (choose *Boxes + masks*).")
        return "<br>".join(lines)

    def _detector_state(self, status: dict) -> str:
        if status["loaded"]:
            return f"loaded on **{status['device']}** ({status['dtype']})"
        if status["error"]:
            return (
                f"<span class='gl-bad'>failed to load</span>: {html.escape(status['error'])} Requests fail at once "
                "until *Load models* tries again."
            )
        try:
            device = select_device(self.lazy.settings.device)
        except GroundlabelError as error:
            return f"<span class='gl-bad'>cannot load</span>: {html.escape(str(error))} Set GROUNDLABEL_DEVICE=cpu."
        return f"not loaded yet: loads on the first run, on **{device}**"


def load_models(hub: ModelHub) -> Callable[..., str]:
    """The *Load models* button's handler: load the detector now (downloading it once when online) instead of on the
    first run, trying again after a failure; the status line shows the result, or why it failed and how to fix it."""

    def load(progress=gr.Progress(track_tqdm=True)) -> str:
        try:
            hub.load(None, progress, retry=True)
        except WeightsError:
            pass  # the status line says why
        return hub.status_markdown()

    return load
