"""Drawing detections on the image with supervision's annotators."""

from __future__ import annotations

import numpy as np
import supervision as sv
from PIL import Image

from .images import LoadedImage
from .results import DetectionResult

_BOXES = sv.BoxAnnotator(thickness=2)
_MASKS = sv.MaskAnnotator(opacity=0.45)
_LABELS = sv.LabelAnnotator(text_scale=0.5, text_padding=4)


def render(image: LoadedImage | Image.Image, result: DetectionResult) -> Image.Image:
    """Boxes, masks (when present) and "label score" tags over a copy of the image."""
    pil = image.pil if isinstance(image, LoadedImage) else image
    canvas = np.array(pil.convert("RGB"))
    if len(result) == 0:
        return Image.fromarray(canvas)
    detections = result.to_supervision()
    if result.masks is not None:
        canvas = _MASKS.annotate(canvas, detections)
    canvas = _BOXES.annotate(canvas, detections)
    tags = [f"{name} {score:.2f}" for name, score in zip(result.display_labels(), result.scores)]
    canvas = _LABELS.annotate(canvas, detections, labels=tags)
    return Image.fromarray(canvas)
