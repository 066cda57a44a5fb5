"""Videos of the shapes world (``pipeline.testing.shapes``) with the truth on every frame: shapes that move at
constant speed, cross one another (the later one drawn on top) and leave or enter through the frame's edges.

``write_video`` draws and encodes one frame at a time (H.264 in MP4 via PyAV), so a long or large video costs no
memory; it returns the ground truth: per frame, the visible box of every shape that shows enough of itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..video import encode_mp4
from .shapes import COLOURS, KINDS, SHAPES_SCENE_SIZE, _background, _box, _draw

# A shape counts as present on a frame when at least this share of it is visible (not cut off, not covered).
VISIBLE = 0.6


@dataclass(frozen=True)
class MovingShape:
    colour: str
    kind: str
    start: tuple[float, float]  # centre on frame 0, pixels (may lie outside the frame)
    velocity: tuple[float, float]  # pixels per frame
    size: float  # pixels

    @property
    def name(self) -> str:
        return f"{self.colour} {self.kind}"

    def centre(self, frame: int) -> tuple[float, float]:
        return self.start[0] + self.velocity[0] * frame, self.start[1] + self.velocity[1] * frame


@dataclass(frozen=True)
class TruthBox:
    frame: int  # 0-based
    object: int  # index of the shape in the scene
    name: str
    xyxy: np.ndarray  # visible part, pixels, x1/y1 exclusive


def crossing_scene(rng: np.random.Generator, size: tuple[int, int] = SHAPES_SCENE_SIZE, frames: int = 48):
    """Four shapes of distinct colours: two that cross each other, one that leaves through the bottom edge, one that
    enters from the left part way through (speeds and sizes jittered by ``rng``)."""
    width, height = size
    colours = rng.permutation(list(COLOURS))  # one colour each: the toy detector mixes up touching same-colour shapes
    picked = [(str(colour), str(rng.choice(list(KINDS)))) for colour in colours]
    side = min(width, height) * rng.uniform(0.24, 0.3, size=4)
    speed = max(width, height) / frames * rng.uniform(0.9, 1.1, size=4)
    return [
        MovingShape(*picked[0], (side[0], height * 0.28), (speed[0], 0.0), side[0]),
        MovingShape(*picked[1], (width - side[1], height * 0.42), (-speed[1], 0.0), side[1]),
        MovingShape(*picked[2], (width * 0.8, height * 0.7), (0.0, speed[2] * 0.9), side[2]),
        MovingShape(*picked[3], (-side[3] * 1.5, height * 0.82), (speed[3] * 0.8, 0.0), side[3]),
    ]


def render(
    shapes: list[MovingShape], rng: np.random.Generator, size: tuple[int, int], frames: int
) -> Iterator[tuple[np.ndarray, list[TruthBox]]]:
    """Each frame (HxWx3 uint8) and its truth, drawn on one background; later shapes cover earlier ones."""
    width, height = size
    background = _background(rng, width, height)
    colours = [np.array(COLOURS[s.colour], np.float32) + rng.uniform(-20, 20, size=3) for s in shapes]
    # the full mask of a shape at a size, drawn on a canvas big enough that nothing is cut: how much is visible
    full_area = [
        _draw(s.kind, int(s.size * 3), int(s.size * 3), s.size * 1.5, s.size * 1.5, s.size, 0.3).sum() for s in shapes
    ]
    for index in range(frames):
        image = background.copy()
        masks = []
        for shape in shapes:
            cx, cy = shape.centre(index)
            masks.append(_draw(shape.kind, width, height, cx, cy, shape.size, 0.3))
        truth = []
        for i, (shape, mask) in enumerate(zip(shapes, masks)):
            image = np.where(mask[..., None], colours[i], image)
            visible = mask & ~np.any(masks[i + 1 :], axis=0) if i + 1 < len(masks) else mask
            if visible.sum() >= VISIBLE * full_area[i]:
                truth.append(TruthBox(index, i, shape.name, _box(visible)))
        yield np.clip(image, 0, 255).astype(np.uint8), truth


def write_video(
    path: Path,
    seed: int = 0,
    size: tuple[int, int] = SHAPES_SCENE_SIZE,
    frames: int = 48,
    fps: int = 24,
    shapes: list[MovingShape] | None = None,
) -> tuple[list[MovingShape], list[TruthBox]]:
    """Encode a crossing scene (or ``shapes``) as H.264 MP4 at ``path`` (its index before the frames, as a browser
    streams it best); the shapes and every frame's truth."""
    rng = np.random.default_rng(seed)
    shapes = shapes or crossing_scene(rng, size, frames)
    truth: list[TruthBox] = []

    def images() -> Iterator[np.ndarray]:
        for image, boxes in render(shapes, rng, size, frames):
            truth.extend(boxes)
            yield image

    encode_mp4(images(), path, fps)
    return shapes, truth


def prompt_for(shapes: list[MovingShape]) -> str:
    """Every shape's name as a phrase: 'red square. blue circle. ...'."""
    return " ".join(f"{name}." for name in dict.fromkeys(s.name for s in shapes))


def frames_of(truth: list[TruthBox]) -> dict[int, list[TruthBox]]:
    found: dict[int, list[TruthBox]] = {}
    for box in truth:
        found.setdefault(box.frame, []).append(box)
    return found


@dataclass(frozen=True)
class TrackingScore:
    """CLEAR-MOT figures of tracks against the truth, from motmetrics (boxes match at IoU >= 0.5)."""

    frames: int
    truth_boxes: int
    recall: float  # share of the truth's boxes matched by a track's box on that frame
    switches: int  # times a shape's matching track id changed
    false_positives: int
    mota: float
    idf1: float
    labels_right: float  # share of matched boxes whose track label is the shape's name

    @property
    def switches_per_100_frames(self) -> float:
        return 100 * self.switches / self.frames


def score_tracks(tracks, truth: list[TruthBox], frames: int) -> TrackingScore:
    """``tracks`` (``pipeline.video.Track``, boxes interpolated between the frames they were detected on, as Label
    Studio shows keyframes) against ``truth`` on every one of ``frames`` frames."""
    import motmetrics

    from .shapes import box_iou

    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    by_frame = frames_of(truth)
    right = matched = 0
    for index in range(frames):
        shown = [(t, t.box_at(index)) for t in tracks]
        shown = [(t, box) for t, box in shown if box is not None]
        objects = by_frame.get(index, [])
        iou = box_iou(np.array([o.xyxy for o in objects]), np.array([box for _, box in shown]))
        distance = np.where(iou >= 0.5, 1 - iou, np.nan)
        accumulator.update([o.object for o in objects], [t.id for t, _ in shown], distance)
        for i, o in enumerate(objects):
            if len(shown) and np.nanmax(np.append(iou[i], 0)) >= 0.5:
                matched += 1
                right += shown[int(np.argmax(iou[i]))][0].label == o.name
    summary = motmetrics.metrics.create().compute(
        accumulator, metrics=["recall", "num_switches", "num_false_positives", "mota", "idf1"], name="video"
    )
    row = summary.loc["video"]
    return TrackingScore(
        frames=frames,
        truth_boxes=len(truth),
        recall=float(row["recall"]),
        switches=int(row["num_switches"]),
        false_positives=int(row["num_false_positives"]),
        mota=float(row["mota"]),
        idf1=float(row["idf1"]),
        labels_right=right / matched if matched else 0.0,
    )
