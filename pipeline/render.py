"""Drawing detections on the image with supervision's annotators, sized for the screen the image is shown on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import supervision as sv
from PIL import Image

from .images import LoadedImage
from .results import DetectionResult

# The UI shows results about this many pixels wide; lines and tags are drawn so they read well at that size.
DISPLAY_WIDTH = 640
# A preview's long side, in pixels: a small image is drawn larger (it fills the screen's box, its tags crisp), a
# large photo smaller (what a screen shows of it anyway, so a redraw does not cost a full-size drawing).
PREVIEW_MIN, PREVIEW_MAX = 1024, 1600


def render(
    image: LoadedImage | Image.Image,
    result: DetectionResult,
    display_width: int = DISPLAY_WIDTH,
    colors: Mapping[str, tuple[int, int, int]] | None = None,
    numbers: Sequence[int] | None = None,
    selected: int | None = None,
) -> Image.Image:
    """Boxes, masks (when present) and "label score" tags over a copy of the image. Line width and text grow with
    the image, so that shown ``display_width`` pixels wide a 6000x4000 photo has the same 2.5 px lines and
    readable tags as a 640 px one; tags stay inside the image and off each other (supervision's smart position).
    ``colors``: RGB per label (a Label Studio project's), else supervision's palette; ``numbers``: each detection's
    number in a list beside the image, shown first in its tag ("#2 dog 0.87"); ``selected``: the row drawn
    highlighted (a white halo around its box, drawn with its tag over the others)."""
    pil = image.pil if isinstance(image, LoadedImage) else image
    canvas = np.array(pil.convert("RGB"))
    if len(result) == 0:
        return Image.fromarray(canvas)
    scale = max(canvas.shape[1], canvas.shape[0] * 4 / 3) / display_width  # a tall image is shown narrower
    detections = result.to_supervision()
    names = list(dict.fromkeys(result.display_labels()))  # in class id order (to_supervision's)
    # supervision draws on numpy arrays as OpenCV's BGR, and ours is RGB: a label's colour goes in reversed
    palette = sv.ColorPalette(
        [
            sv.Color(*colors[name][::-1]) if name in (colors or {}) else sv.ColorPalette.DEFAULT.by_idx(i)
            for i, name in enumerate(names)
        ]
    )
    tags = [f"{name} {score:.2f}" for name, score in zip(result.display_labels(), result.scores)]
    if numbers is not None:
        tags = [f"#{number} {tag}" for number, tag in zip(numbers, tags)]
    thickness = max(2, round(2.5 * scale))
    if result.masks is not None:  # every mask in one pass (supervision paints the largest first)
        canvas = sv.MaskAnnotator(color=palette, opacity=0.45).annotate(canvas, detections)
    # boxes and tags without the masks, so reordering them copies no mask
    outlines = sv.Detections(xyxy=detections.xyxy, confidence=detections.confidence, class_id=detections.class_id)
    if selected is not None:  # drawn last, over its neighbours and their tags, with a white halo
        order = [i for i in range(len(result)) if i != selected] + [selected]
        outlines, tags = outlines[order], [tags[i] for i in order]
    boxes = sv.BoxAnnotator(color=palette, thickness=thickness)
    canvas = boxes.annotate(canvas, outlines)
    if selected is not None:
        chosen = outlines[[-1]]
        canvas = sv.BoxAnnotator(color=sv.Color.WHITE, thickness=3 * thickness).annotate(canvas, chosen)
        canvas = boxes.annotate(canvas, chosen)
    labels = sv.LabelAnnotator(
        color=palette,
        text_scale=0.5 * max(scale, 1.0),
        text_thickness=max(1, round(scale)),
        text_padding=max(4, round(4 * scale)),
        smart_position=True,
    )
    return Image.fromarray(labels.annotate(canvas, outlines, labels=tags))


def preview_scale(width: int, height: int) -> float:
    """Preview pixels per image pixel: the long side brought within [PREVIEW_MIN, PREVIEW_MAX]."""
    long_side = max(width, height)
    return PREVIEW_MIN / long_side if long_side < PREVIEW_MIN else min(1.0, PREVIEW_MAX / long_side)


def render_preview(
    image: LoadedImage,
    result: DetectionResult,
    colors: Mapping[str, tuple[int, int, int]] | None = None,
    numbers: Sequence[int] | None = None,
    selected: int | None = None,
    show_masks: bool = True,
) -> Image.Image:
    """``render`` at ``preview_scale`` (boxes and masks scaled with the image, so lines and tags are drawn at the
    size they are seen); ``show_masks`` False draws the boxes only."""
    scale = preview_scale(image.width, image.height)
    size = (round(image.width * scale), round(image.height * scale))
    masks = None
    if result.masks is not None and show_masks:
        masks = (
            result.masks
            if scale == 1.0
            else np.array(
                [np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST)) for mask in result.masks],
                dtype=bool,
            ).reshape(len(result), size[1], size[0])
        )
    drawn = replace(result, width=size[0], height=size[1], xyxy=result.xyxy * scale, masks=masks)
    picture = image.pil if scale == 1.0 else image.pil.resize(size, Image.Resampling.BILINEAR)
    return render(picture, drawn, colors=colors, numbers=numbers, selected=selected)
