"""Label Studio's region types, one entry each: the control tag a config declares, the result type its regions
carry, whether it holds a mask, the name people read, and how a detection becomes its ``value`` and a region goes
back to pixels.

Adding a region type is one ``RegionType`` in ``REGIONS`` plus its write/read functions: the config parser, the
converters, the smart tools and the review's wording all read this table. Coordinates are percent of the image as
Label Studio shows it (after EXIF rotation, the frame ``DetectionResult`` is in); masks travel as Label Studio's
brush RLE (label-studio-sdk's encoder and decoder).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import supervision as sv
from label_studio_sdk.converter.brush import decode_rle, mask2rle

# A detection's box (xyxy pixels) and mask (H x W bool or None) on a width x height image -> the region's ``value``
# without its label, and the bytes its id is hashed from; None when the detection has no such region (empty mask).
Writer = Callable[[np.ndarray, np.ndarray | None, int, int], tuple[dict, bytes] | None]
# A stored region -> pixels: ``[x0, y0, x1, y1]`` for a box type, an (H, W) bool mask for a mask type.
Reader = Callable[[dict], np.ndarray]


@dataclass(frozen=True)
class RegionType:
    """One Label Studio region type. ``write`` None: groundlabel never fills it (only reads it as a smart-tool
    prompt); ``read`` None: nothing reads it back to pixels. ``smart``: the tag is a smart tool when marked
    ``smart="true"``, its results a prompt for the segmenter."""

    tag: str  # the control tag in a labeling config: "RectangleLabels"
    type: str  # the result's "type", also the key of its labels in "value": "rectanglelabels"
    name: str  # what people read: "rectangle"
    masks: bool  # its regions carry a mask: the segmenter must run
    write: Writer | None = None
    read: Reader | None = None
    smart: bool = False
    labels_key: str = ""  # the key of its labels in "value" when it is not ``type`` (video boxes: "labels")

    @property
    def label_field(self) -> str:
        return self.labels_key or self.type


def box_to_percent(xyxy: np.ndarray, width: int, height: int) -> dict:
    """Pixel box -> Label Studio's ``x, y, width, height`` in percent, clipped to the image ([0, 100])."""
    box = np.asarray(xyxy, dtype=np.float64)  # float32 pixels would leave 50.000004 % for 100 of 200 px
    x0, x1 = (np.clip(box[[0, 2]], 0, width) / width * 100).tolist()
    y0, y1 = (np.clip(box[[1, 3]], 0, height) / height * 100).tolist()
    return {
        "x": round(x0, 6),
        "y": round(y0, 6),
        "width": round(x1 - x0, 6),
        "height": round(y1 - y0, 6),
        "rotation": 0,
    }


def box_to_pixels(region: dict) -> np.ndarray:
    """A rectangle region -> ``[x0, y0, x1, y1]`` in pixels of ``original_width`` x ``original_height``."""
    value, width, height = region["value"], region["original_width"], region["original_height"]
    x0, y0 = value["x"] / 100 * width, value["y"] / 100 * height
    return np.array([x0, y0, x0 + value["width"] / 100 * width, y0 + value["height"] / 100 * height])


def rle_to_mask(region: dict) -> np.ndarray:
    """A brush region -> (H, W) bool mask, decoded with label-studio-sdk's own RLE decoder."""
    width, height = region["original_width"], region["original_height"]
    return decode_rle(region["value"]["rle"]).reshape(height, width, 4)[:, :, 3] > 127


def polygon_to_mask(region: dict) -> np.ndarray:
    """A polygon region -> (H, W) bool mask (its points are percent of the image)."""
    width, height = region["original_width"], region["original_height"]
    points = np.array(region["value"]["points"], dtype=np.float64).reshape(-1, 2) / 100 * [width, height]
    return sv.polygon_to_mask(np.round(points).astype(int), (width, height)).astype(bool)


def _rectangle(box: np.ndarray, mask: np.ndarray | None, width: int, height: int) -> tuple[dict, bytes]:
    return box_to_percent(box, width, height), np.round(box, 2).tobytes()


def _brush(box: np.ndarray, mask: np.ndarray, width: int, height: int) -> tuple[dict, bytes]:
    return {"format": "rle", "rle": mask2rle(mask.astype(np.uint8) * 255)}, np.packbits(mask).tobytes()


def _polygon(box: np.ndarray, mask: np.ndarray, width: int, height: int) -> tuple[dict, bytes] | None:
    """The mask's largest outline (by filled area) as a closed polygon."""
    polygons = sv.mask_to_polygons(mask.astype(bool))
    if not polygons:
        return None
    points = max(polygons, key=lambda p: sv.polygon_to_mask(p, (mask.shape[1], mask.shape[0])).sum()).astype(float)
    value = {"points": (points / [width, height] * 100).round(4).tolist(), "closed": True}
    return value, np.packbits(mask).tobytes()


def video_sequence(
    frames: np.ndarray, xyxy: np.ndarray, width: int, height: int, fps: float, tolerance: float = 0.5
) -> list[dict]:
    """A track's boxes (``xyxy`` pixels on ``frames``, Label Studio's 1-based frame numbers at ``fps``, the
    ``<Video>`` tag's frame rate) -> a ``videorectangle``'s keyframes. Label Studio interpolates linearly between
    keyframes, so a keyframe that interpolation between its neighbours reproduces within ``tolerance`` percent (x, y,
    width and height) is left out: a box moving steadily needs two keyframes, not one per frame. The last keyframe
    has ``enabled: false``: the track ends there."""
    boxes = np.array([list(box_to_percent(box, width, height).values())[:4] for box in xyxy], np.float64)
    kept = [0]
    for end in range(2, len(frames) + 1):  # can the segment from the last kept keyframe reach ``end - 1``?
        start, last = kept[-1], end - 1
        if last - start < 2:
            continue
        share = (frames[start + 1 : last] - frames[start]) / (frames[last] - frames[start])
        line = boxes[start] + share[:, None] * (boxes[last] - boxes[start])
        if np.abs(line - boxes[start + 1 : last]).max() > tolerance:
            kept.append(last - 1)
    if kept[-1] != len(frames) - 1:
        kept.append(len(frames) - 1)
    return [
        {
            "frame": int(frames[i]),
            "enabled": i != kept[-1],
            "rotation": 0,
            **dict(zip(("x", "y", "width", "height"), (round(v, 4) for v in boxes[i]))),
            "time": round(int(frames[i]) / fps, 6),
        }
        for i in kept
    ]


RECTANGLE = RegionType("RectangleLabels", "rectanglelabels", "rectangle", False, _rectangle, box_to_pixels, smart=True)
BRUSH = RegionType("BrushLabels", "brushlabels", "brush mask", True, _brush, rle_to_mask)
POLYGON = RegionType("PolygonLabels", "polygonlabels", "polygon", True, _polygon, polygon_to_mask)
KEYPOINT = RegionType("KeyPointLabels", "keypointlabels", "keypoint", False, smart=True)
# One region per track (``video_sequence``; ``sync.convert.video_to_label_studio``); its labels come from a <Labels>
# tag on the same <Video>, and Label Studio keeps them under "labels".
VIDEO_RECTANGLE = RegionType("VideoRectangle", "videorectangle", "video box", False, labels_key="labels")
REGIONS = (RECTANGLE, BRUSH, POLYGON, KEYPOINT, VIDEO_RECTANGLE)
BY_TAG = {region.tag: region for region in REGIONS}
BY_TYPE = {region.type: region for region in REGIONS}
FILLED = tuple(region for region in REGIONS if region.write is not None)  # what text-prompt detections become


def tag_list(regions: tuple[RegionType, ...], last: str = "or") -> str:
    """'<RectangleLabels>, <BrushLabels> or <PolygonLabels>': the tags named in a message."""
    tags = [f"<{region.tag}>" for region in regions]
    return f"{', '.join(tags[:-1])} {last} {tags[-1]}" if len(tags) > 1 else "".join(tags)
