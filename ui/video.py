"""Video tab: a short video and a prompt -> the objects tracked through it (``pipeline.video``), drawn on the video
(supervision's box, label and trace annotators), a table of the tracks, the annotated MP4 and the tracks as JSON.

Progress counts frames; Cancel stops the run at the next detector batch or drawn frame and keeps nothing. The
annotated MP4 is written under a temporary name and renamed once complete, so a failed or cancelled run leaves no
half-written file to download.
"""

from __future__ import annotations

import hashlib
import html
import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import supervision as sv

from pipeline import Options, parse_prompt
from pipeline.families import reads_text_threshold
from pipeline.video import VideoReader, VideoTracks, encode_mp4, track_video

from .controls import threshold_sliders
from .detections import Updates, Values, guarded, notice
from .models import ModelHub, ProgressFn, on_gpu
from .playground import uploaded_path

TRACK_HEADERS = ["track", "label", "first frame", "last frame", "detections", "mean score"]
# The trace behind each box: where its centre was over the last this many seconds.
TRACE_SECONDS = 2.0


class Cancelled(Exception):
    """Cancel was pressed: the run stops where it is and keeps nothing."""


def video_tab(hub: ModelHub, model_status: gr.Markdown) -> None:
    """Lay out the video tab and wire its events; ``model_status`` is refreshed after every run."""
    with gr.Row(equal_height=False, elem_id="vd-layout"):
        with gr.Column(scale=5, min_width=420, elem_id="vd-input"):
            video = gr.Video(label="Video", sources=["upload"], height=260, elem_id="vd-video")
            prompt = gr.Textbox(
                label="Prompt",
                placeholder="car. person",
                max_lines=2,
                info="Phrases separated by . or , (phrase:label names the label); each object found becomes a track",
                elem_id="vd-prompt",
            )
            with gr.Row(equal_height=True):
                run = gr.Button("Track", variant="primary", elem_id="vd-run")
                cancel = gr.Button("Cancel", elem_id="vd-cancel")
            stride = gr.Slider(
                1,
                12,
                value=hub.lazy.settings.video_stride,
                step=1,
                label="Frame stride",
                info="The detector on every n-th frame: faster; boxes between are interpolated",
                elem_id="vd-stride",
            )
            box, text, nms = threshold_sliders("vd", reads_text_threshold(hub.lazy.settings.detector))
        with gr.Column(scale=6, min_width=480, elem_id="vd-output"):
            result = gr.Video(label="Tracked", interactive=False, height=360, elem_id="vd-result")
            message = gr.HTML(elem_id="vd-message")
            table = gr.Dataframe(headers=TRACK_HEADERS, interactive=False, max_height=220, elem_id="vd-table")
            with gr.Row(equal_height=True):
                download_video = gr.DownloadButton("Download MP4", interactive=False, elem_id="vd-download-video")
                download_json = gr.DownloadButton("Download tracks JSON", interactive=False, elem_id="vd-download-json")
    controls = (video, prompt, run, cancel, stride, box, text, nms)
    VideoTab(hub, model_status, *controls, result, message, table, download_video, download_json).wire()


@dataclass
class VideoTab:
    """The video tab's components and handlers, in the playground's style: a handler answers ``{component: new
    value}`` and a failure becomes the message (``guarded``). ``stops`` holds the Cancel flag of each browser
    session's running track."""

    hub: ModelHub
    model_status: gr.Markdown
    video: gr.Video
    prompt: gr.Textbox
    run: gr.Button
    cancel: gr.Button
    stride: gr.Slider
    box: gr.Slider
    text: gr.Slider
    nms: gr.Slider
    result: gr.Video
    message: gr.HTML
    table: gr.Dataframe
    download_video: gr.DownloadButton
    download_json: gr.DownloadButton
    stops: dict[str, threading.Event] = field(default_factory=dict)

    def wire(self) -> None:
        asking = {self.video, self.prompt, self.stride, self.box, self.text, self.nms}
        outputs = [self.result, self.message, self.table, self.download_video, self.download_json, self.model_status]
        # the upload unprocessed: Gradio's preprocessing would run ffmpeg on it (uploaded_path)
        runs = [
            trigger(self.on_track, asking, outputs, concurrency_id="model", preprocess=False)
            for trigger in (self.run.click, self.prompt.submit)
        ]
        self.cancel.click(self.on_cancel, None, self.message, cancels=runs)

    @guarded()
    def on_track(self, values: Values, request: gr.Request, progress: gr.Progress = gr.Progress()) -> Updates:
        """Track what the prompt names through the uploaded video, draw the tracks on it, and offer both."""
        path = uploaded_path(values[self.video])
        if not path:
            return {self.message: notice("Upload a video first.", "info")}
        prompt = values[self.prompt]
        parse_prompt(prompt)  # an empty prompt fails here, before any model loads
        options = Options(values[self.box], values[self.text], nms_threshold=values[self.nms])
        stop = self.stops[request.session_hash] = threading.Event()
        try:
            start = time.perf_counter()
            tracks, mp4, tracks_json = track_and_draw(
                self.hub, Path(path), prompt, options, int(values[self.stride]), progress, stop
            )
        except Cancelled:
            return {self.message: notice("Cancelled: nothing kept.", "info")}
        finally:
            if self.stops.get(request.session_hash) is stop:
                del self.stops[request.session_hash]
        return {
            self.result: mp4,
            self.message: said(tracks, prompt, time.perf_counter() - start),
            self.table: track_rows(tracks),
            self.download_video: gr.DownloadButton(value=mp4, interactive=True),
            self.download_json: gr.DownloadButton(value=tracks_json, interactive=True),
            self.model_status: self.hub.status_markdown(),
        }

    def on_cancel(self, request: gr.Request) -> str:
        """Stop this session's running track (Gradio drops its answer; the flag stops its work)."""
        stop = self.stops.get(request.session_hash)
        if stop is not None:
            stop.set()
        return notice("Cancelled: nothing kept.", "info")


@on_gpu
def track_and_draw(
    hub: ModelHub,
    path: Path,
    prompt: str,
    options: Options,
    stride: int,
    progress: ProgressFn,
    stop: threading.Event,
) -> tuple[VideoTracks, str, str]:
    """The tracks of ``prompt`` in the video at ``path``, the annotated MP4 and the tracks' JSON (their paths, under
    a folder named by the video's and the tracks' content, so a repeated run reuses them). Raises ``Cancelled`` once ``stop`` is set."""

    def tick(desc: str) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            if stop.is_set():
                raise Cancelled
            progress((done, total or None), desc=desc, unit="frames")

        return report

    pipeline = hub.load(None, progress)
    tracks = track_video(pipeline, path, prompt, options, stride=stride, progress=tick("Tracking"))
    payload = {"video": path.name, "prompt": prompt, "box_threshold": options.box_threshold, **tracks.to_dict()}
    data = json.dumps(payload, indent=2).encode()
    with path.open("rb") as source:  # the video's bytes too: another video may give the same tracks
        digest = hashlib.file_digest(source, "sha1")
    digest.update(data)
    folder = Path(tempfile.gettempdir()) / "groundlabel-video" / digest.hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    stem = path.stem or "video"
    tracks_json, mp4 = folder / f"{stem}-tracks.json", folder / f"{stem}-tracked.mp4"
    if not mp4.exists():
        partial = folder / f"{stem}-tracked.part.mp4"
        settings = pipeline.settings
        try:
            frames = drawn_frames(VideoReader(path, settings.max_pixels, settings.max_video_frames), tracks, tick)
            encode_mp4(frames, partial, tracks.info.fps)
            partial.replace(mp4)
        finally:
            partial.unlink(missing_ok=True)
    tracks_json.write_bytes(data)
    return tracks, str(mp4), str(tracks_json)


def drawn_frames(
    reader: VideoReader, tracks: VideoTracks, tick: Callable[[str], Callable[[int, int], None]]
) -> Iterator[np.ndarray]:
    """The video's frames with each track's box on it (interpolated between detections, as Label Studio shows
    them), its number and label, and the trace of its last ``TRACE_SECONDS``; one colour per track."""
    boxes, labels = sv.BoxAnnotator(thickness=2), sv.LabelAnnotator(text_scale=0.4, text_padding=3)
    trace = sv.TraceAnnotator(thickness=2, trace_length=max(2, round(tracks.info.fps * TRACE_SECONDS)))
    report = tick("Drawing the tracks")
    for index, frame in enumerate(reader):
        shown = [(track, box) for track in tracks.tracks if (box := track.box_at(index)) is not None]
        ids = np.array([track.id for track, _ in shown], int)
        detections = sv.Detections(
            xyxy=np.array([box for _, box in shown], np.float32).reshape(-1, 4), class_id=ids, tracker_id=ids
        )
        scene = np.ascontiguousarray(frame[..., ::-1])  # supervision draws on BGR arrays
        scene = trace.annotate(scene, detections)
        scene = boxes.annotate(scene, detections)
        scene = labels.annotate(scene, detections, labels=[f"#{t.id} {t.label or t.phrase + '?'}" for t, _ in shown])
        if index % 10 == 0:
            report(index + 1, reader.expected)
        yield scene[..., ::-1]


def track_rows(tracks: VideoTracks) -> list[list]:
    """One row per track: its number, label (``phrase?`` where no label matched), frames (0-based) and score."""
    return [
        [t.id, t.label or f"{t.phrase}?", int(t.frames[0]), int(t.frames[-1]), len(t.frames), round(t.score, 3)]
        for t in tracks.tracks
    ]


def said(tracks: VideoTracks, prompt: str, seconds: float) -> str:
    """ "4 tracks for "car" in 120 frames (..., the detector on 1 frame in 2) in 9.1 s", and the phrases no label
    took."""
    count, info = len(tracks.tracks), tracks.info
    every = "every frame" if tracks.stride == 1 else f"1 frame in {tracks.stride}"
    line = (
        f"<strong>{count} track{'s' * (count != 1)}</strong> for “{html.escape(prompt)}” in {info.frames} frames "
        f"({info.width}x{info.height}, {info.fps:g}/s; the detector on {every}) in {seconds:.1f} s"
    )
    if tracks.unmapped:
        line += (
            "<br>No label for " + ", ".join(f"“{html.escape(p)}”" for p in tracks.unmapped) + ": shown as “phrase?”."
        )
    return line
