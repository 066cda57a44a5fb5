"""Pipeline results -> Label Studio results (and back to pixels, to check where regions land).

Label Studio places regions in percent of the image as the browser shows it, i.e. after EXIF rotation: exactly
the frame ``DetectionResult`` is in. Masks travel as Label Studio's brush RLE (label-studio-sdk's encoder).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import supervision as sv

from pipeline import DetectionResult

from .config import LabelsControl, ProjectConfig
from .regions import BY_TYPE, RegionType, video_sequence

if TYPE_CHECKING:  # PyAV loads with the first video, not with the backend
    from pipeline.video import VideoTracks


@dataclass(frozen=True)
class LabelStudioResult:
    """What Label Studio stores for one task: regions (``result``), an overall score and the model version.

    ``skipped`` says, per detection left out, why (no project label for its phrase, label not in a control,
    empty mask), so a UI can show it rather than drop work silently.
    """

    result: list[dict]
    score: float
    model_version: str
    skipped: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)  # prompt phrases that name none of the project's labels
    notes: tuple[str, ...] = ()  # the pipeline's sentences about what it cut (e.g. masks past the cap)

    @property
    def region_ids(self) -> list[str]:
        return [region["id"] for region in self.result]

    def payload(self) -> dict:
        """The body of an ML-backend prediction: ``{"result", "score", "model_version"}``."""
        return {"result": self.result, "score": self.score, "model_version": self.model_version}


def to_label_studio(
    result: DetectionResult, config: ProjectConfig, *, boxes: bool | None = None, masks: bool | None = None
) -> LabelStudioResult:
    """Regions for every labeled detection: a rectangle per box and a brush (and polygon) region per mask, for
    each control of ``config`` that has the detection's label. ``boxes`` / ``masks`` default to what the
    config has tags for; masks need ``result.masks``.

    Region ids are derived from control, label and geometry, so the same result always gets the same ids. The
    model version gets the config's part (``ProjectConfig.version``): regions written for another config count as
    another version.
    """
    width, height = result.width, result.height
    with_masks = result.masks is not None and masks is not False
    controls = [c for c in config.controls if (with_masks if BY_TYPE[c.type].masks else boxes is not False)]
    regions: list[dict] = []
    skipped: list[str] = []
    shown: list[int] = []  # detections that became regions
    for i, (label, phrase) in enumerate(zip(result.labels, result.prompt_phrases)):
        if label is None:
            skipped.append(f"{phrase!r}: matches none of the project's labels ({', '.join(config.labels)})")
            continue
        mask = None if result.masks is None else result.masks[i]
        made = [
            _region(control, label, result.xyxy[i], mask, width, height)
            for control in controls
            if label in control.labels
        ]
        made = [region for region in made if region is not None]
        if not made:
            skipped.append(
                f"{phrase!r} -> {label!r}: no {'/'.join(c.name for c in controls) or 'wanted'} tag "
                "has this label, or its mask is empty"
            )
        for region in made:
            region.update(
                to_name=config.image,
                original_width=width,
                original_height=height,
                image_rotation=0,
                score=round(float(result.scores[i]), 4),
            )
        regions += made
        shown += [i] if made else []
    _make_ids_unique(regions)
    return LabelStudioResult(
        result=regions,
        score=review_score(result.scores[shown], result.xyxy[shown]),
        model_version=config.version(result.model_version),
        skipped=skipped,
        unmapped=list(result.unmapped),
        notes=result.notes,
    )


def video_to_label_studio(tracks: VideoTracks, config: ProjectConfig, framerate: float) -> LabelStudioResult:
    """One ``videorectangle`` region per track whose label the config's VideoRectangle control has: its keyframes
    (``regions.video_sequence``) in Label Studio's frame numbering, which counts from 1 at the <Video>'s
    ``framerate`` (decoded frame ``i`` at the video's own rate is Label Studio's frame ``round(i * framerate /
    fps) + 1``), and ``framesCount`` / ``duration`` as its editor writes them."""
    (control,) = config.controls
    info = tracks.info
    regions, skipped, scores = [], [], []
    for track in tracks.tracks:
        if track.label is None or track.label not in control.labels:
            skipped.append(f"track {track.id} ({track.phrase!r}): no label of {control.name!r} for it")
            continue
        frames = np.round(track.frames * framerate / info.fps).astype(int) + 1
        sequence = video_sequence(frames, track.xyxy, info.width, info.height, framerate)
        key = np.round(track.xyxy, 2).tobytes() + track.frames.astype(np.int64).tobytes()
        regions.append(
            {
                "id": hashlib.sha1(f"{control.name}|{track.label}|".encode() + key).hexdigest()[:10],
                "type": control.type,
                "from_name": control.name,
                "to_name": config.image,
                "score": round(track.score, 4),
                "value": {
                    "framesCount": max(1, round(info.duration * framerate)),
                    "duration": round(info.duration, 6),
                    "sequence": sequence,
                    "labels": [track.label],
                },
            }
        )
        scores.append(track.score)
    return LabelStudioResult(
        result=regions,
        score=round(min(scores), 4) if scores else 0.0,
        model_version=config.version(tracks.model_version),
        skipped=skipped,
        unmapped=list(tracks.unmapped),
    )


def review_score(scores: np.ndarray, xyxy: np.ndarray) -> float:
    """The prediction's ``score``, which Label Studio's Data Manager sorts by: how sure the whole suggestion is, so
    an ascending sort puts first the tasks most likely to need fixing. It is the weakest detection's score (the one
    nearest the threshold), halved-to-less where two boxes overlap (IoU >= 0.5: a duplicate or two labels on one
    object), and 0 for no detection at all (a miss is the likeliest fix)."""
    if not len(scores):
        return 0.0
    ious = sv.box_iou_batch(xyxy, xyxy)
    np.fill_diagonal(ious, 0)
    overlap = ious.max(1)
    return round(float(np.min(scores * np.where(overlap >= 0.5, 1 - overlap / 2, 1))), 4)


def _region(
    control: LabelsControl, label: str, box: np.ndarray, mask: np.ndarray | None, width: int, height: int
) -> dict | None:
    """One region of ``control``'s type without the per-image fields, or None when its mask is empty."""
    kind = BY_TYPE[control.type]
    if kind.masks and (mask is None or not mask.any()):
        return None
    written = kind.write(box, mask, width, height)
    if written is None:
        return None
    value, key = written
    value[kind.label_field] = [label]
    digest = hashlib.sha1(f"{control.name}|{label}|".encode() + key).hexdigest()[:10]
    return {"id": digest, "type": kind.type, "from_name": control.name, "value": value}


def _make_ids_unique(regions: list[dict]) -> None:
    """Two detections with the same label and geometry would share an id; Label Studio needs them distinct."""
    seen: dict[str, int] = {}
    for region in regions:
        count = seen.get(region["id"], 0)
        seen[region["id"]] = count + 1
        if count:
            region["id"] = f"{region['id']}-{count}"


# --- Label Studio regions -> pixels (what Label Studio will show) ---------------------------------------------


def from_label_studio(regions: list[dict], width: int, height: int, model_version: str = "") -> DetectionResult:
    """Label Studio regions of one task (an annotation's or a prediction's ``result``) -> one detection per object
    on a ``width`` x ``height`` image: a brush or polygon region is an object with its mask, taking the box of the
    rectangle of the same label that overlaps its extent most (IoU >= 0.5; groundlabel sends both for each
    detection), else the mask's extent; a rectangle no mask claims is an object of its own, whose mask (when the
    task has masks) is its box. Regions of other types (keypoints, text) are left out."""
    read = [(r, BY_TYPE[r["type"]]) for r in regions if r.get("type") in BY_TYPE and BY_TYPE[r["type"]].read]
    boxes = [(r, _label(r, kind), kind.read(r)) for r, kind in read if not kind.masks]
    objects: list[tuple[str, np.ndarray, np.ndarray | None, float]] = []
    for region, kind in read:
        if not kind.masks:
            continue
        mask = kind.read(region)
        if not mask.any() or (mask.shape != (height, width)):
            continue
        label = _label(region, kind)
        extent = sv.mask_to_xyxy(mask[None])[0].astype(np.float64) + [0, 0, 1, 1]
        same = [(i, box) for i, (_, box_label, box) in enumerate(boxes) if box_label == label]
        ious = [float(sv.box_iou_batch(box[None], extent[None])[0, 0]) for _, box in same]
        best = int(np.argmax(ious)) if ious else -1
        if best >= 0 and ious[best] >= 0.5:
            index, box = same[best]
            boxes[index] = (*boxes[index][:2], None)  # claimed
            extent = box
        objects.append((label, extent, mask, _score(region)))
    with_masks = bool(objects)
    for region, label, box in boxes:
        if box is not None:
            box_mask = np.zeros((height, width), bool) if with_masks else None
            if box_mask is not None:
                x0, y0, x1, y1 = np.round(np.clip(box, 0, [width, height] * 2)).astype(int)
                box_mask[y0:y1, x0:x1] = True
            objects.append((label, box, box_mask, _score(region)))
    labels = [label for label, *_ in objects]
    return DetectionResult(
        width=width,
        height=height,
        xyxy=np.array([box for _, box, *_ in objects], np.float32).reshape(-1, 4),
        scores=np.array([score for *_, score in objects], np.float32),
        phrases=list(labels),
        prompt_phrases=list(labels),
        labels=list(labels),
        masks=np.array([mask for _, _, mask, _ in objects]) if with_masks else None,
        model_version=model_version,
    )


def _label(region: dict, kind: RegionType) -> str:
    return region["value"][kind.type][0]


def _score(region: dict) -> float:
    return float(region.get("score") or 1.0)
