"""Drawing detections on the image with supervision's annotators, sized for the screen the image is shown on."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import supervision as sv
from PIL import Image

from .images import LoadedImage
from .results import DetectionResult

# The UI shows results about this many pixels wide; lines and tags are drawn so they read well at that size.
DISPLAY_WIDTH = 640


def render(image: LoadedImage | Image.Image, result: DetectionResult, display_width: int = DISPLAY_WIDTH,
           colors: Mapping[str, tuple[int, int, int]] | None = None,
           numbers: Sequence[int] | None = None) -> Image.Image:
    """Boxes, masks (when present) and "label score" tags over a copy of the image. Line width and text grow with
    the image, so that shown ``display_width`` pixels wide a 6000x4000 photo has the same 2.5 px lines and
    readable tags as a 640 px one; tags stay inside the image and off each other (supervision's smart position).
    ``colors``: RGB per label (a Label Studio project's), else supervision's palette; ``numbers``: each detection's
    number in a list beside the image, shown first in its tag ("#2 dog 0.87")."""
    pil = image.pil if isinstance(image, LoadedImage) else image
    canvas = np.array(pil.convert("RGB"))
    if len(result) == 0:
        return Image.fromarray(canvas)
    scale = max(canvas.shape[1], canvas.shape[0] * 4 / 3) / display_width  # a tall image is shown narrower
    detections = result.to_supervision()
    names = list(dict.fromkeys(result.display_labels()))  # in class id order (to_supervision's)
    # supervision draws on numpy arrays as OpenCV's BGR, and ours is RGB: a label's colour goes in reversed
    palette = sv.ColorPalette([sv.Color(*colors[name][::-1]) if name in (colors or {})
                               else sv.ColorPalette.DEFAULT.by_idx(i) for i, name in enumerate(names)])
    if result.masks is not None:
        canvas = sv.MaskAnnotator(color=palette, opacity=0.45).annotate(canvas, detections)
    canvas = sv.BoxAnnotator(color=palette, thickness=max(2, round(2.5 * scale))).annotate(canvas, detections)
    labels = sv.LabelAnnotator(color=palette, text_scale=0.5 * max(scale, 1.0), text_thickness=max(1, round(scale)),
                               text_padding=max(4, round(4 * scale)), smart_position=True)
    tags = [f"{name} {score:.2f}" for name, score in zip(result.display_labels(), result.scores)]
    if numbers is not None:
        tags = [f"#{number} {tag}" for number, tag in zip(numbers, tags)]
    return Image.fromarray(labels.annotate(canvas, detections, labels=tags))
