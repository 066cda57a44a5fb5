"""Label Studio's smart tools: the annotator's keypoints and box on one object -> one segmenter prompt -> its mask as
brush / polygon regions with the clicked label.

The rule for interactive requests: when the context holds results of the config's smart tools (``smart="true"``
KeyPointLabels / RectangleLabels), they are the request, whatever else it holds (the click is what the annotator
just did); otherwise the TextArea prompt is. All keypoints of the context and its last smart box go to the
segmenter together, as one object: positive points add to the mask, negative ones (Alt-click in Label Studio)
take away, the box bounds it. Coordinates are percent of the image as Label Studio shows it, the upright frame
our images are in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline import DetectionResult, MaskPrompt

from .config import ProjectConfig
from .convert import LabelStudioResult, to_label_studio
from .errors import ConfigError, RequestError
from .regions import BY_TYPE, FILLED, KEYPOINT, tag_list

MASKED = tuple(region for region in FILLED if region.masks)  # where a smart tool's mask can go


@dataclass(frozen=True)
class SmartRequest:
    """One object's prompt from the smart tools, in percent of the image: points with their positive flags, an
    optional box (x, y, width, height as Label Studio gives it, turned ``rotation`` degrees about its top-left
    corner), and the label the annotator chose (of the last smart result)."""

    label: str
    points: tuple[tuple[float, float], ...] = ()
    positive: tuple[bool, ...] = ()
    box: tuple[float, float, float, float] | None = None
    rotation: float = 0.0

    @classmethod
    def from_results(cls, config: ProjectConfig, results: list[dict] | None) -> SmartRequest | None:
        """The smart-tool results of an interactive context, or None when it holds none. ``RequestError`` for one
        Label Studio would not send (no coordinates, no label) or an image rotated in the editor."""
        tools = {tool.name: tool.type for tool in config.smart_tools}
        smart = [item for item in results or [] if tools.get(item.get("from_name")) == item.get("type")]
        if not smart:
            return None
        points, positive, box, rotation, label = [], [], None, 0.0, None
        for item in smart:
            value = item.get("value") if isinstance(item.get("value"), dict) else {}
            if item.get("image_rotation") not in (None, 0, 0.0):
                raise RequestError(
                    "The image is rotated in Label Studio's editor (image_rotation="
                    f"{item['image_rotation']}); rotate it back to use the smart tools."
                )
            labels = value.get(item["type"])
            if not (isinstance(labels, list) and labels and isinstance(labels[0], str)):
                raise RequestError(f"The smart-tool result of {item['from_name']!r} has no label.")
            label = labels[0]
            if item["type"] == KEYPOINT.type:
                points.append((_number(value, "x"), _number(value, "y")))
                positive.append(item.get("is_positive", True) is not False)
            else:
                box = tuple(_number(value, key) for key in ("x", "y", "width", "height"))
                rotation = float(value["rotation"]) if isinstance(value.get("rotation"), (int, float)) else 0.0
        return cls(label, tuple(points), tuple(positive), box, rotation)

    def mask_prompt(self, width: int, height: int) -> MaskPrompt:
        """The prompt in pixels of a ``width`` x ``height`` image."""
        box = None if self.box is None else _pixel_box(self.box, self.rotation, width, height)
        points = tuple(
            (min(max(x * width / 100, 0), width - 1), min(max(y * height / 100, 0), height - 1)) for x, y in self.points
        )
        return MaskPrompt(box=box, points=points, positive=self.positive)

    def answer(self, config: ProjectConfig, mask: np.ndarray, score: float, model_version: str) -> LabelStudioResult:
        """The mask as regions of every brush / polygon tag that has the clicked label; ``ConfigError`` when none
        has it (the mask would have nowhere to go)."""
        if not any(self.label in c.labels for c in config.controls if BY_TYPE[c.type].masks):
            raise ConfigError(
                f"The smart tools' label {self.label!r} is in no {tag_list(MASKED)} tag "
                "of the labeling config: add it there to receive the mask."
            )
        ys, xs = np.nonzero(mask)
        xyxy = np.array(
            [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]] if len(xs) else np.zeros((1, 4)), dtype=np.float32
        )
        height, width = mask.shape
        result = DetectionResult(
            width=width,
            height=height,
            xyxy=xyxy,
            scores=np.array([score], dtype=np.float32),
            phrases=[self.label],
            prompt_phrases=[self.label],
            labels=[self.label],
            masks=mask[None],
            model_version=model_version,
        )
        return to_label_studio(result, config, boxes=False, masks=True)


def _number(value: dict, key: str) -> float:
    number = value.get(key)
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
        raise RequestError(f"A smart-tool result has no numeric {key!r} (percent of the image).")
    return float(number)


def _pixel_box(
    box: tuple[float, float, float, float], rotation: float, width: int, height: int
) -> tuple[float, float, float, float]:
    """Label Studio's percent ``x, y, width, height`` -> pixel (x0, y0, x1, y1) clipped to the image; a rotated
    rectangle (turned in pixels about its top-left corner) -> the box around its corners."""
    x, y, w, h = box[0] * width / 100, box[1] * height / 100, box[2] * width / 100, box[3] * height / 100
    cos, sin = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    xs = [x + cx * cos - cy * sin for cx, cy in ((0, 0), (w, 0), (w, h), (0, h))]
    ys = [y + cx * sin + cy * cos for cx, cy in ((0, 0), (w, 0), (w, h), (0, h))]
    return (
        min(max(min(xs), 0), width),
        min(max(min(ys), 0), height),
        min(max(max(xs), 0), width),
        min(max(max(ys), 0), height),
    )
