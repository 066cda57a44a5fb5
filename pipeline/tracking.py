"""Detections on successive frames -> track ids: ByteTrack's two-stage association, without its Kalman filter.

supervision 0.31 no longer ships ``ByteTrack`` (it moved to Roboflow's ``trackers`` package, which requires the GUI
``opencv-python`` and so collides with the headless OpenCV that label-studio-sdk installs). This is its association
step as the paper describes it: confident detections are matched to every live track first (Hungarian assignment
on IoU with each track's box moved by its velocity), weak ones only to the tracks still unmatched, so a partly
hidden object keeps its id; an unmatched confident detection starts a track, and a track unseen for ``max_lost``
frames ends. Tracks seen on fewer than ``min_hits`` frames are dropped at the end (``finished``): one-frame false
positives never become regions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import supervision as sv
from scipy.optimize import linear_sum_assignment


@dataclass
class _Track:
    id: int
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # the caller's row index of each detection, per frame
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # box change per frame
    anchor: tuple[int, np.ndarray] | None = None  # the last confident detection: (frame, box)
    moves: int = 0  # velocity measurements so far

    def predicted(self, frame: int) -> np.ndarray:
        """Where the box should be on ``frame``: the last confident box moved at the track's velocity. Weak
        detections never steer it: a box half on another object would drag the track off its own."""
        assert self.anchor is not None
        return self.anchor[1] + self.velocity * (frame - self.anchor[0])

    def add(self, frame: int, box: np.ndarray, row: int, confident: bool) -> None:
        box = np.asarray(box, np.float64)
        if confident:
            if self.anchor is not None:
                step = (box - self.anchor[1]) / max(1, frame - self.anchor[0])
                self.velocity = step if not self.moves else 0.5 * self.velocity + 0.5 * step
                self.moves += 1
            self.anchor = (frame, box)
        self.frames.append(frame)
        self.boxes.append(box)
        self.rows.append(row)


@dataclass(frozen=True)
class TrackedRows:
    """One finished track: its id and, per frame it was seen on, that frame and the caller's detection row."""

    id: int
    frames: tuple[int, ...]
    rows: tuple[int, ...]


class ByteTracker:
    """Feed ``update(frame, xyxy, scores)`` once per sampled frame in order; read ``finished()`` at the end.

    ``high``: scores at or above it may start tracks and are matched first; lower ones only extend tracks.
    ``match_iou``: the least IoU between a detection and a track's predicted box for them to match.
    """

    def __init__(self, high: float, match_iou: float = 0.3, max_lost: int = 30, min_hits: int = 2):
        self.high = high
        self.match_iou = match_iou
        self.max_lost = max_lost
        self.min_hits = min_hits
        self._live: list[_Track] = []
        self._done: list[_Track] = []
        self._next_id = 1

    def update(self, frame: int, xyxy: np.ndarray, scores: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """The track id of each detection on ``frame`` (0 for a weak detection no track took)."""
        xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        rows = np.arange(len(xyxy)) if rows is None else np.asarray(rows)
        ids = np.zeros(len(xyxy), int)
        self._retire(frame)
        strong = np.flatnonzero(scores >= self.high)
        weak = np.flatnonzero(scores < self.high)
        free = self._match(frame, self._live, strong, xyxy, rows, ids, confident=True)
        self._match(frame, free, weak, xyxy, rows, ids, confident=False)
        for index in strong[ids[strong] == 0]:
            track = _Track(self._next_id)
            self._next_id += 1
            track.add(frame, xyxy[index], int(rows[index]), confident=True)
            self._live.append(track)
            ids[index] = track.id
        return ids

    def finished(self) -> list[TrackedRows]:
        """Every track, ended or live, seen on at least ``min_hits`` frames, by id."""
        tracks = sorted(self._done + self._live, key=lambda t: t.id)
        return [TrackedRows(t.id, tuple(t.frames), tuple(t.rows)) for t in tracks if len(t.frames) >= self.min_hits]

    def _retire(self, frame: int) -> None:
        lost = [t for t in self._live if frame - t.frames[-1] > self.max_lost]
        self._done += lost
        self._live = [t for t in self._live if t not in lost]

    def _match(
        self,
        frame: int,
        tracks: list[_Track],
        detections: np.ndarray,
        xyxy: np.ndarray,
        rows: np.ndarray,
        ids: np.ndarray,
        confident: bool,
    ) -> list[_Track]:
        """Assign ``detections`` to ``tracks`` (IoU >= ``match_iou``); the tracks left unmatched."""
        if not len(tracks) or not len(detections):
            return list(tracks)
        predicted = np.stack([t.predicted(frame) for t in tracks])
        iou = sv.box_iou_batch(predicted, xyxy[detections])
        track_index, det_index = linear_sum_assignment(-iou)
        matched = set()
        for t, d in zip(track_index, det_index):
            if iou[t, d] >= self.match_iou:
                tracks[t].add(frame, xyxy[detections[d]], int(rows[detections[d]]), confident)
                ids[detections[d]] = tracks[t].id
                matched.add(t)
        return [track for i, track in enumerate(tracks) if i not in matched]
