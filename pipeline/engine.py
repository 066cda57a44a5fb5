"""The grounding pipeline: image + text prompt + options -> labeled boxes, and masks when a segmenter is named."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import supervision as sv

from .detector import CachedDetector
from .errors import ExemplarError
from .families import load_detector
from .images import LoadedImage, load_image
from .labels import LabelMap
from .options import Options, model_version
from .prompts import Prompt, parse_prompt
from .registry import DetectorSpec, exemplars_refused
from .results import DetectionResult
from .segmenter import MaskPrompt, SegmenterPool
from .settings import PipelineSettings

log = logging.getLogger(__name__)


class GroundingPipeline:
    """Grounding DINO for boxes, then optionally SAM / MobileSAM for masks, in stages that each have a cache:

    ``detect`` runs the detector (raw outputs cached per image and prompt, so thresholds re-filter without a model
    run), ``label`` applies the options' thresholds and the label map (no model), ``segment`` decodes one mask per
    box from the segmenter's cached image embedding (masks cached per box).
    """

    def __init__(
        self,
        detector: CachedDetector,
        segmenters: SegmenterPool | None = None,
        settings: PipelineSettings | None = None,
    ):
        self.detector = detector
        self.segmenters = segmenters or SegmenterPool(device=str(detector.device))
        self.settings = settings or PipelineSettings(detector=detector.model_id)
        # the last other detector asked for, beside the default, with its spec
        self._other: tuple[DetectorSpec, CachedDetector] | None = None
        self._other_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: PipelineSettings) -> GroundingPipeline:
        """Load the detector now (registered name, Hub id or local dir); segmenters on first use."""
        detector = load_detector(
            settings.detector_spec,
            device=settings.device,
            dtype=settings.dtype,
            input_size=settings.input_size,
            offline=settings.offline,
            runtime=settings.runtime,
            cache_dir=settings.cache_dir,
        )
        segmenters = SegmenterPool(
            device=str(detector.device),
            checkpoints=dict(settings.checkpoints),
            cache_dir=settings.cache_dir,
            offline=settings.offline,
            memory_budget=settings.segmenter_memory,
        )
        return cls(detector, segmenters, settings)

    @property
    def batch_size(self) -> int:
        """Images per detector forward: the settings' choice, else 4 on a GPU (faster per image), 1 on a CPU."""
        return self.settings.batch_size or (4 if self.detector.device.type == "cuda" else 1)

    def __call__(
        self,
        image: LoadedImage | bytes | str,
        prompt: str | Prompt,
        options: Options = Options(),
        label_map: LabelMap | None = None,
    ) -> DetectionResult:
        return self.batch([image], prompt, options, label_map)[0]

    def batch(
        self,
        images: Sequence[LoadedImage | bytes | str],
        prompt: str | Prompt,
        options: Options = Options(),
        label_map: LabelMap | None = None,
    ) -> list[DetectionResult]:
        """Several images with one prompt: the uncached ones of one processed size share a detector forward."""
        loaded = [load_image(image, self.settings.max_pixels) for image in images]
        prompt = self.check_prompt(prompt, options)
        raws = self.detector_for(options).raw(loaded, prompt)
        results = [self.label(image, raw, prompt, options, label_map or LabelMap()) for image, raw in zip(loaded, raws)]
        if options.segmenter and not self.spec_for(options).makes_masks:  # SAM 3 made its own
            results = [
                self.segment(image, result, options.segmenter, options.max_masks)
                for image, result in zip(loaded, results)
            ]
        return results

    def label(self, image: LoadedImage, raw, prompt: Prompt, options: Options, label_map: LabelMap) -> DetectionResult:
        """Thresholds, label mapping and duplicate suppression over the detector's raw output: no model runs.

        A box passes its phrase's threshold from the prompt (``cat@0.4``), else its label's (``label_thresholds``),
        else the box threshold: the raw output is filtered at the lowest of them first, then row by row."""
        lowest = min([options.lowest_threshold, *prompt.thresholds.values()])
        found = self.detector_for(options).postprocess(
            raw, image.width, image.height, replace(options, box_threshold=lowest, label_thresholds=())
        )
        prompt_phrases = [prompt.names[i] for i in found.phrase_index]
        result = DetectionResult(
            width=image.width,
            height=image.height,
            xyxy=found.xyxy,
            scores=found.scores,
            phrases=found.phrases,
            prompt_phrases=prompt_phrases,
            masks=found.masks,
            labels=[label_map.label_for(phrase, prompt.explicit_labels) for phrase in prompt_phrases],
            unmapped=label_map.unmapped(prompt.names, prompt.explicit_labels),
            model_version=self.model_version(options, prompt),
        )
        limits = [
            prompt.thresholds.get(phrase, options.threshold_for(label or phrase))
            for phrase, label in zip(prompt_phrases, result.labels)
        ]
        return suppress_duplicates(result[result.scores > np.array(limits, dtype=np.float32)], options.nms_threshold)

    def segment(
        self, image: LoadedImage, result: DetectionResult, segmenter: str, max_masks: int | None = None
    ) -> DetectionResult:
        """``result`` with one mask per box from ``segmenter`` (its image embedding and masks come from caches).

        At most ``mask_limit`` detections get a mask (``max_masks``, else the settings' cap, fewer on large images):
        when more were found, the rows are ordered by score, the highest-scoring ones get masks, the others keep an
        all-False mask (a box only, in never-touched zeroed memory) and ``notes`` says so."""
        limit = self.mask_limit(image, max_masks)
        if len(result) <= limit:
            masks = self.segmenters.get(segmenter).decode(image, [MaskPrompt.from_box(box) for box in result.xyxy])
            return replace(result, masks=masks)
        result = result[np.argsort(-result.scores, kind="stable")]
        masks = np.zeros((len(result), image.height, image.width), dtype=bool)
        self.segmenters.get(segmenter).decode(
            image, [MaskPrompt.from_box(box) for box in result.xyxy[:limit]], out=masks[:limit]
        )
        note = (
            f"Masks were made for the {limit} highest-scoring of {len(result)} detections; the other "
            f"{len(result) - limit} are boxes only (raise the box threshold, or GROUNDLABEL_MAX_MASKS / "
            "GROUNDLABEL_MASK_MEMORY_MB for more masks)."
        )
        log.info("%dx%d image: %s", image.width, image.height, note)
        return replace(result, masks=masks, notes=(*result.notes, note))

    def mask_limit(self, image: LoadedImage, max_masks: int | None = None) -> int:
        """How many detections on ``image`` get masks: ``max_masks`` (else the settings' cap), and no more than
        the settings' mask memory holds at this image's size (at least one)."""
        fit = self.settings.mask_memory // max(1, image.width * image.height)
        return max(1, min(max_masks or self.settings.max_masks, fit))

    def check_prompt(self, prompt: str | Prompt, options: Options | None = None) -> Prompt:
        """The parsed prompt once the detector (``options``'s, else the default) can read all of it, else
        ``PromptError`` with the reason (``ExemplarError`` for example boxes it cannot read): lets a caller refuse a
        prompt before it downloads images or remembers it."""
        prompt = prompt if isinstance(prompt, Prompt) else parse_prompt(prompt)
        if prompt.exemplars and not self.spec_for(options).reads_exemplars:
            raise ExemplarError(exemplars_refused(self.spec_for(options)))
        self.detector_for(options).tokenize(prompt)
        return prompt

    def model_version(self, options: Options, prompt: Prompt | None = None, *, stride: int = 1) -> str:
        """Names what produced a result, so Label Studio can tell predictions of different setups apart: from the
        resolved spec, so it is the same before and after any model loads (``stride``: a video's frame stride)."""
        return model_version(self.spec_for(options), options, prompt, mask_cap=self.settings.max_masks, stride=stride)

    @property
    def other_detector(self) -> DetectorSpec | None:
        """The detector a request named besides the default, if one is loaded."""
        return self._other[0] if self._other else None

    def spec_for(self, options: Options | None = None) -> DetectorSpec:
        """The detector ``options`` names, resolved with this pipeline's settings; the default's when it names none
        (or another name of the default)."""
        if options is None or not options.detector:
            return self.settings.detector_spec
        return self.settings.resolve(options.detector)

    def detector_for(self, options: Options | None = None) -> CachedDetector:
        """The detector ``options`` names, loaded on first use with this pipeline's settings; the default one when
        it names none or the default. Besides the default, only the last other detector stays loaded (each holds
        0.6-0.9 GB), so trying detectors one after another cannot exhaust memory."""
        spec = self.spec_for(options)
        if spec == self.settings.detector_spec:
            return self.detector
        s = self.settings
        with self._other_lock:
            if self._other is None or self._other[0] != spec:
                self._other = None  # the previous one goes before the next one loads
                loaded = load_detector(
                    spec,
                    device=s.device,
                    dtype=s.dtype,
                    input_size=s.input_size,
                    offline=s.offline,
                    runtime=s.runtime,
                    cache_dir=s.cache_dir,
                )
                self._other = (spec, loaded)
            return self._other[1]


def suppress_duplicates(result: DetectionResult, iou_threshold: float) -> DetectionResult:
    """Class-aware NMS (supervision's): of boxes with the same label (the phrase, for an unmapped one) overlapping
    by more than ``iou_threshold`` IoU only the highest-scoring stays. Grounding DINO often puts two to four boxes
    on one object; boxes of different labels never suppress each other."""
    if len(result) < 2 or iou_threshold >= 1.0:
        return result
    names = result.display_labels()
    classes = {name: i for i, name in enumerate(dict.fromkeys(names))}
    rows = np.column_stack([result.xyxy, result.scores, [classes[name] for name in names]])
    return result[sv.box_non_max_suppression(rows, iou_threshold)]
