"""Drawing detections on the image with supervision's annotators, sized for the screen the image is shown on."""

from __future__ import annotations

import numpy as np
import supervision as sv
from PIL import Image

from .images import LoadedImage
from .results import DetectionResult

# The UI shows results about this many pixels wide; lines and tags are drawn so they read well at that size.
DISPLAY_WIDTH = 640
_MASKS = sv.MaskAnnotator(opacity=0.45)


def render(image: LoadedImage | Image.Image, result: DetectionResult,
           display_width: int = DISPLAY_WIDTH) -> Image.Image:
    """Boxes, masks (when present) and "label score" tags over a copy of the image. Line width and text grow with
    the image, so that shown ``display_width`` pixels wide a 6000x4000 photo has the same 2.5 px lines and
    readable tags as a 640 px one; tags stay inside the image and off each other (supervision's smart position)."""
    pil = image.pil if isinstance(image, LoadedImage) else image
    canvas = np.array(pil.convert("RGB"))
    if len(result) == 0:
        return Image.fromarray(canvas)
    scale = max(canvas.shape[1], canvas.shape[0] * 4 / 3) / display_width  # a tall image is shown narrower
    detections = result.to_supervision()
    if result.masks is not None:
        canvas = _MASKS.annotate(canvas, detections)
    canvas = sv.BoxAnnotator(thickness=max(2, round(2.5 * scale))).annotate(canvas, detections)
    labels = sv.LabelAnnotator(text_scale=0.5 * max(scale, 1.0), text_thickness=max(1, round(scale)),
                               text_padding=max(4, round(4 * scale)), smart_position=True)
    tags = [f"{name} {score:.2f}" for name, score in zip(result.display_labels(), result.scores)]
    return Image.fromarray(labels.annotate(canvas, detections, labels=tags))
