"""groundlabel's inference core: Grounding DINO boxes, SAM / MobileSAM masks, caches, label mapping, rendering."""

from .detector import DEFAULT_DETECTOR, GroundingDinoDetector
from .engine import DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD, GroundingPipeline, model_version
from .errors import GroundlabelError, ImageError, PromptError, WeightsError
from .images import LoadedImage, load_image
from .labels import LabelMap
from .loader import LazyPipeline, PipelineSettings
from .prompts import Prompt, parse_prompt
from .render import render
from .results import DetectionResult
from .segmenter import Segmenter, SegmenterPool
from .weights import SEGMENTERS, segmenter_spec

__all__ = [
    "DEFAULT_BOX_THRESHOLD", "DEFAULT_DETECTOR", "DEFAULT_TEXT_THRESHOLD", "DetectionResult", "GroundingDinoDetector",
    "GroundingPipeline", "GroundlabelError", "ImageError", "LabelMap", "LazyPipeline", "LoadedImage", "PipelineSettings", "Prompt", "PromptError",
    "SEGMENTERS", "Segmenter", "SegmenterPool", "WeightsError", "load_image", "model_version", "parse_prompt", "render",
    "segmenter_spec",
]
