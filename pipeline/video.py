"""Video as a source of images: frames decoded one at a time (PyAV), the detector on every ``stride``-th frame,
detections joined into tracks (``pipeline.tracking``), one label per track.

Frames are numbered from 0 in decoding order (``Track.frames``); Label Studio counts from 1, which ``sync``
adds when it writes. Only the frames of one detector batch are in memory at a time, so a long video costs time,
not memory.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

from .errors import VideoError
from .images import LoadedImage, load_image
from .labels import LabelMap
from .options import Options
from .prompts import Prompt
from .settings import DEFAULT_MAX_VIDEO_FRAMES
from .tracking import ByteTracker

if TYPE_CHECKING:
    from .engine import GroundingPipeline

# Weak detections (ByteTrack's second stage) are kept down to this fraction of the box threshold.
WEAK_FRACTION = 0.5
# A track unseen for this long ends; one seen again later is a new track.
MAX_LOST_SECONDS = 1.0


@dataclass(frozen=True)
class VideoInfo:
    """What Label Studio's ``<Video>`` needs beside the boxes: frame size, frame rate and frames decoded."""

    width: int
    height: int
    fps: float
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.fps


@dataclass(frozen=True)
class Track:
    """One object through the video: the frames (0-based) it was detected on, its box (xyxy pixels) and score on
    each, and one label: the one most of its detections got (``phrase``: the prompt phrase most of those had)."""

    id: int
    label: str | None
    phrase: str
    frames: np.ndarray  # (n,) int, increasing
    xyxy: np.ndarray  # (n, 4) float32
    scores: np.ndarray  # (n,) float32

    @property
    def score(self) -> float:
        return float(self.scores.mean())

    def box_at(self, frame: int) -> np.ndarray | None:
        """The box on ``frame``, interpolated linearly between detections (as Label Studio shows keyframes);
        None outside the track's first and last frame."""
        if frame < self.frames[0] or frame > self.frames[-1]:
            return None
        return np.array([np.interp(frame, self.frames, self.xyxy[:, k]) for k in range(4)], np.float32)


@dataclass(frozen=True)
class VideoTracks:
    """The tracks of one video for one prompt."""

    info: VideoInfo
    tracks: list[Track]
    stride: int
    model_version: str
    unmapped: list[str] = field(default_factory=list)  # prompt phrases naming none of the target labels

    def to_dict(self) -> dict:
        """JSON-ready tracks (frames 0-based)."""
        return {
            "width": self.info.width,
            "height": self.info.height,
            "fps": self.info.fps,
            "frames": self.info.frames,
            "stride": self.stride,
            "model_version": self.model_version,
            "unmapped": self.unmapped,
            "tracks": [
                {
                    "id": t.id,
                    "label": t.label,
                    "phrase": t.phrase,
                    "score": round(t.score, 4),
                    "boxes": [
                        {"frame": int(f), "box_xyxy": [round(float(v), 2) for v in box], "score": round(float(s), 4)}
                        for f, box, s in zip(t.frames, t.xyxy, t.scores)
                    ],
                }
                for t in self.tracks
            ],
        }


class VideoReader:
    """A video's frames as RGB arrays, decoded one at a time. ``VideoError`` names what is wrong with a file that
    is not a video, has no frames, is larger per frame than ``max_pixels``, longer than ``max_frames`` (refused
    before decoding when its header or duration says so, else at the first frame past it) or breaks off part way
    (seen where the header lists a frame count or a duration: a cut file without either decodes shorter)."""

    def __init__(self, source: bytes | str | Path, max_pixels: int, max_frames: int = DEFAULT_MAX_VIDEO_FRAMES):
        if isinstance(source, bytes) and not source:
            raise VideoError("The video is empty (0 bytes).")
        try:
            self._container = av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source))
        except (av.FFmpegError, OSError) as error:
            raise VideoError(f"The data is not a readable video (truncated or corrupt?): {error}") from None
        if not self._container.streams.video:  # an MP4 whose video track has no frames reads like this too
            self._container.close()
            raise VideoError("The file holds no video stream with frames.")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        context = self._stream.codec_context
        self.width, self.height = int(context.width), int(context.height)
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        self.max_frames = max_frames
        if self.width * self.height > max_pixels:
            self._fail(
                f"The video's frames are {self.width}x{self.height} = {self.width * self.height:,} pixels, over the "
                f"limit of {max_pixels:,} (set GROUNDLABEL_MAX_PIXELS to raise it)."
            )
        if not self.fps > 0:
            self._fail("The video states no frame rate; re-encode it with one (e.g. ffmpeg -r 25).")
        # what the header says: a frame count (MP4), else the duration at the frame rate (Matroska, MPEG-TS); 0: none
        self.declared = int(self._stream.frames)
        duration = self._container.duration  # microseconds, None where the container does not say
        self.expected = self.declared or (round(duration / av.time_base * self.fps) if duration else 0)
        if self.expected > max_frames:
            self._fail(
                f"The video has {'' if self.declared else 'about '}{self.expected:,} frames, over the limit of "
                f"{max_frames:,} (set GROUNDLABEL_MAX_VIDEO_FRAMES to raise it, or cut the video)."
            )
        self.decoded = 0

    def _fail(self, sentence: str) -> None:
        self._container.close()
        raise VideoError(sentence)

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            for frame in self._container.decode(self._stream):
                if self.decoded >= self.max_frames:
                    raise VideoError(
                        f"The video runs past {self.max_frames:,} frames, the limit (set GROUNDLABEL_MAX_VIDEO_FRAMES "
                        "to raise it, or cut the video)."
                    )
                self.decoded += 1
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as error:
            raise VideoError(
                f"The video breaks off after frame {self.decoded} (truncated or corrupt?): {error}"
            ) from None
        finally:
            self._container.close()
        if not self.decoded:
            raise VideoError("The video has no frames.")
        if self.declared and self.decoded < self.declared - 1:  # a cut file whose header survived decodes shorter
            raise VideoError(
                f"The video breaks off after frame {self.decoded} of the {self.declared} its header lists (truncated?)."
            )
        if not self.declared and self.decoded < self.expected - max(1, self.expected // 50):
            raise VideoError(
                f"The video breaks off after frame {self.decoded} of the about {self.expected} its duration lists "
                "(truncated?)."
            )


def track_video(
    pipeline: GroundingPipeline,
    source: bytes | str | Path,
    prompt: str | Prompt,
    options: Options = Options(),
    label_map: LabelMap | None = None,
    *,
    stride: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VideoTracks:
    """The tracks of what ``prompt`` names in the video ``source`` (bytes or a path): every ``stride``-th frame
    (default: the settings' ``video_stride``) goes through ``pipeline``'s detector (in its batch size), detections
    at or above the box threshold start and extend tracks, those down to ``WEAK_FRACTION`` of it only extend them.
    ``progress(frames decoded, frames expected)`` (expected 0 where the file does not say) is called after each
    batch; an exception it raises stops the run (the UI's Cancel). The model version is the images' with ``-stride<n>``
    past 1 (``pipeline.model_version``), so Label Studio's /setup announces the version of what a video gets. A bad
    or too long video raises ``VideoError`` and returns nothing: no tracks of its first part."""
    stride = pipeline.settings.video_stride if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise VideoError(f"The frame stride must be a whole number of at least 1, got {stride!r}.")
    prompt = pipeline.check_prompt(prompt, options)
    label_map = label_map or LabelMap()
    reader = VideoReader(source, pipeline.settings.max_pixels, pipeline.settings.max_video_frames)
    tracker = ByteTracker(
        high=options.box_threshold, max_lost=max(1, math.ceil(reader.fps * MAX_LOST_SECONDS)), min_hits=2
    )
    weak = replace(options, box_threshold=options.box_threshold * WEAK_FRACTION)
    seen: dict[int, tuple[np.ndarray, np.ndarray, list[str | None], list[str]]] = {}

    def run(batch: list[tuple[int, LoadedImage]]) -> None:
        results = pipeline.batch([image for _, image in batch], prompt, weak, label_map)
        for (index, _), result in zip(batch, results):
            tracker.update(index, result.xyxy, result.scores)
            seen[index] = (result.xyxy, result.scores, result.labels, result.prompt_phrases)
        if progress:
            progress(reader.decoded, reader.expected)

    batch: list[tuple[int, LoadedImage]] = []
    for index, frame in enumerate(reader):
        if index % stride:
            continue
        batch.append((index, load_image(frame, pipeline.settings.max_pixels)))
        if len(batch) >= pipeline.batch_size:
            run(batch)
            batch = []
    if batch:
        run(batch)
    info = VideoInfo(reader.width, reader.height, reader.fps, reader.decoded)
    tracks = [_track(rows.id, rows.frames, rows.rows, seen) for rows in tracker.finished()]
    return VideoTracks(
        info=info,
        tracks=[replace(track, id=i) for i, track in enumerate(tracks, start=1)],
        stride=stride,
        model_version=pipeline.model_version(options, prompt, stride=stride),
        unmapped=label_map.unmapped(prompt.phrases, prompt.explicit_labels),
    )


def _track(track_id: int, frames, rows, seen) -> Track:
    boxes = np.array([seen[f][0][r] for f, r in zip(frames, rows)], np.float32)
    scores = np.array([seen[f][1][r] for f, r in zip(frames, rows)], np.float32)
    labels = [seen[f][2][r] for f, r in zip(frames, rows)]
    phrases = [seen[f][3][r] for f, r in zip(frames, rows)]
    label = Counter(labels).most_common(1)[0][0]
    phrase = Counter(p for p, lab in zip(phrases, labels) if lab == label).most_common(1)[0][0]
    return Track(track_id, label, phrase, np.asarray(frames, int), boxes, scores)


def encode_mp4(frames: Iterable[np.ndarray], path: Path, fps: float) -> int:
    """Encode RGB frames (HxWx3 uint8, one size) one at a time as H.264 MP4 at ``path``, its index first so a browser
    plays it while it loads; an odd width or height is stretched by a pixel (PyAV scales each frame to the stream's
    size; H.264's 4:2:0 needs even ones). Returns the frames written; the file is complete only once this returns."""
    written = 0
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.height, stream.width = frame.shape[0] + frame.shape[0] % 2, frame.shape[1] + frame.shape[1] % 2
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "18", "preset": "veryfast"}
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            written += 1
        if stream is not None:
            container.mux(stream.encode())
    return written
