"""groundlabel's inference core: Grounding DINO boxes, SAM / MobileSAM masks, caches, label mapping, rendering.

The public names are resolved on first access (PEP 562), so ``from pipeline import LabelMap`` loads only
pipeline/labels.py: importing the package, its errors, labels or options costs no torch or transformers.
"""

from __future__ import annotations

from .lazy import export_lazily

# public name -> the submodule that defines it; resolved on first access
__getattr__ = export_lazily(
    __name__,
    {
        "GroundingDinoDetector": "detector",
        "GroundingPipeline": "engine",
        "GroundlabelError": "errors",
        "ExemplarError": "errors",
        "ImageError": "errors",
        "PromptError": "errors",
        "SettingsError": "errors",
        "WeightsError": "errors",
        "VideoError": "errors",
        "LoadedImage": "images",
        "load_image": "images",
        "LabelMap": "labels",
        "LazyPipeline": "loader",
        "DEFAULT_BOX_THRESHOLD": "options",
        "DEFAULT_TEXT_THRESHOLD": "options",
        "DEFAULT_NMS_THRESHOLD": "options",
        "VERSION_PREFIX": "options",
        "Options": "options",
        "model_version": "options",
        "Exemplar": "prompts",
        "ExemplarQuery": "prompts",
        "Prompt": "prompts",
        "parse_prompt": "prompts",
        "DEFAULT_DETECTOR": "registry",
        "DETECTORS": "registry",
        "SEGMENTERS": "registry",
        "SegmenterSpec": "registry",
        "register_segmenter": "registry",
        "segmenter_spec": "registry",
        "preview_scale": "render",
        "render": "render",
        "render_preview": "render",
        "DetectionResult": "results",
        "MaskPrompt": "segmenter",
        "Segmenter": "segmenter",
        "SegmenterPool": "segmenter",
        "DEFAULT_MAX_PIXELS": "settings",
        "PipelineSettings": "settings",
        "VideoTracks": "video",
        "track_video": "video",
    },
)
