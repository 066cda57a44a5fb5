"""groundlabel's inference core: Grounding DINO boxes, SAM / MobileSAM masks, caches, label mapping, rendering."""

from .detector import GroundingDinoDetector
from .engine import GroundingPipeline
from .errors import GroundlabelError, ImageError, PromptError, SettingsError, WeightsError
from .images import LoadedImage, load_image
from .labels import LabelMap
from .loader import LazyPipeline
from .options import DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD, VERSION_PREFIX, Options, model_version
from .prompts import Prompt, parse_prompt
from .registry import DEFAULT_DETECTOR, DETECTORS, SEGMENTERS, SegmenterSpec, register_segmenter, segmenter_spec
from .render import preview_scale, render, render_preview
from .results import DetectionResult
from .segmenter import MaskPrompt, Segmenter, SegmenterPool
from .settings import DEFAULT_MAX_PIXELS, PipelineSettings

__all__ = [
    "DEFAULT_BOX_THRESHOLD",
    "DEFAULT_DETECTOR",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_TEXT_THRESHOLD",
    "DETECTORS",
    "DetectionResult",
    "GroundingDinoDetector",
    "GroundingPipeline",
    "GroundlabelError",
    "ImageError",
    "LabelMap",
    "LazyPipeline",
    "LoadedImage",
    "MaskPrompt",
    "Options",
    "PipelineSettings",
    "Prompt",
    "PromptError",
    "SEGMENTERS",
    "Segmenter",
    "SegmenterPool",
    "SegmenterSpec",
    "SettingsError",
    "VERSION_PREFIX",
    "WeightsError",
    "load_image",
    "model_version",
    "parse_prompt",
    "preview_scale",
    "register_segmenter",
    "render",
    "render_preview",
    "segmenter_spec",
]
