"""Video in the pipeline: a generated video of moving shapes (two cross, one leaves, one enters) through the toy
detector becomes one track per shape with its name as label, on every ``video_stride``-th frame; bad, cut, empty or
too long files fail with a sentence and no result."""

from __future__ import annotations

import io
from dataclasses import replace

import av
import numpy as np
import pytest

from pipeline import GroundingPipeline, Options, PipelineSettings, SettingsError, VideoError
from pipeline.testing import shapes as S
from pipeline.testing.video_scenes import prompt_for, score_tracks, write_video
from pipeline.tracking import ByteTracker
from pipeline.video import VideoReader, encode_mp4, track_video

FRAMES = 40


@pytest.fixture(scope="module")
def shapes_pipeline():
    return S.load_shapes_pipeline()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "shapes.mp4"
    shapes, truth = write_video(path, seed=1, frames=FRAMES)
    return path, shapes, truth


@pytest.fixture(scope="module")
def tracked(shapes_pipeline, video):
    path, shapes, _ = video
    options = Options(S.SHAPES_BOX_THRESHOLD, S.SHAPES_TEXT_THRESHOLD)
    return track_video(shapes_pipeline, path, prompt_for(shapes), options, stride=2)


def test_each_moving_shape_is_one_track_with_its_name_and_its_boxes_follow_it(video, tracked):
    _, shapes, truth = video
    assert sorted(t.label for t in tracked.tracks) == sorted(s.name for s in shapes)
    score = score_tracks(tracked.tracks, truth, tracked.info.frames)
    assert score.recall >= 0.9 and score.switches == 0 and score.labels_right == 1.0, score


def test_tracks_carry_every_second_frame_numbered_from_zero_and_the_video_size_and_rate(tracked):
    assert (tracked.info.width, tracked.info.height, tracked.info.fps, tracked.info.frames) == (160, 160, 24.0, FRAMES)
    for track in tracked.tracks:
        assert set(track.frames) <= set(range(0, FRAMES, 2)) and len(track.frames) == len(track.xyxy)
    entering = min(tracked.tracks, key=lambda t: -t.frames[0])  # the shape that comes in from the left edge
    assert entering.frames[0] > 0 and "-stride2-p" in tracked.model_version


def test_a_track_box_between_detections_is_interpolated_and_none_outside_it(tracked):
    track = tracked.tracks[0]
    first, second = track.frames[:2]
    middle = track.box_at((first + second) // 2) if second - first == 2 else None
    assert middle is None or np.allclose(middle, (track.xyxy[0] + track.xyxy[1]) / 2, atol=1e-3)
    assert track.box_at(int(track.frames[-1]) + 1) is None


def test_a_weak_detection_extends_a_track_but_never_starts_one():
    tracker = ByteTracker(high=0.5, min_hits=1)
    box = np.array([[10, 10, 40, 40]], float)
    assert tracker.update(0, box, [0.3]).tolist() == [0]  # alone and weak: no track
    first = tracker.update(1, box, [0.9])[0]
    assert tracker.update(2, box + 2, [0.3]).tolist() == [first]  # weak, on the track: extends it
    assert [t.frames for t in tracker.finished()] == [(1, 2)]


def test_crossing_objects_keep_their_ids_through_the_motion():
    tracker = ByteTracker(high=0.5, min_hits=1)
    ids = []
    for frame in range(20):  # two boxes swap sides, overlapping in the middle frames
        a = [10 + 4 * frame, 10, 40 + 4 * frame, 40]
        b = [86 - 4 * frame, 20, 116 - 4 * frame, 50]
        ids.append(tracker.update(frame, np.array([a, b], float), [0.9, 0.9]).tolist())
    assert all(pair == ids[0] for pair in ids)


@pytest.mark.parametrize(
    "content, sentence",
    [
        (b"", "empty"),
        (b"not a video at all" * 50, "not a readable video"),
    ],
)
def test_bytes_that_are_not_a_video_fail_with_a_sentence(content, sentence):
    with pytest.raises(VideoError, match=sentence):
        VideoReader(content, 10**8)


def test_a_cut_video_fails_with_a_sentence_not_half_a_result(shapes_pipeline, video):
    path, shapes, _ = video
    data = path.read_bytes()
    with pytest.raises(VideoError, match=f"breaks off after frame .* of the {FRAMES} its header lists"):
        track_video(shapes_pipeline, data[: len(data) // 2], prompt_for(shapes))  # the index survives, frames not
    with pytest.raises(VideoError, match="not a readable video"):
        track_video(shapes_pipeline, data[len(data) // 2 :], prompt_for(shapes))  # the index is gone


def test_frames_over_the_pixel_limit_are_refused_before_decoding(video):
    with pytest.raises(VideoError, match="160x160 = 25,600 pixels, over the limit of 10,000"):
        VideoReader(video[0], 10_000)


def with_settings(pipeline: GroundingPipeline, **changes) -> GroundingPipeline:
    """The same loaded models under other settings."""
    return GroundingPipeline(pipeline.detector, pipeline.segmenters, replace(pipeline.settings, **changes))


def encode(frames: int, format: str = "mp4", options: dict | None = None, size: int = 32) -> bytes:
    """A small video of ``frames`` grey frames at 24/s in ``format``; ``frames=0`` writes the header only."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=format, options=options or {}) as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        container.start_encoding()
        for index in range(frames):
            image = np.full((size, size, 3), 8 * index % 256, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def test_the_video_stride_setting_picks_the_frames_the_detector_sees_and_names_the_version(shapes_pipeline, video):
    path, shapes, _ = video
    strided = with_settings(shapes_pipeline, video_stride=3)
    options = Options(S.SHAPES_BOX_THRESHOLD, S.SHAPES_TEXT_THRESHOLD)

    result = track_video(strided, path, prompt_for(shapes), options)

    assert result.stride == 3 and result.tracks
    assert all(set(track.frames) <= set(range(0, FRAMES, 3)) for track in result.tracks)
    prompt = strided.check_prompt(prompt_for(shapes))
    assert result.model_version == strided.model_version(options, prompt, stride=3)
    assert "-stride3-p" in result.model_version and "-stride" not in strided.model_version(options, prompt)


def test_the_video_settings_are_read_from_the_environment_once_and_a_bad_one_is_refused():
    read = PipelineSettings.from_env({"GROUNDLABEL_VIDEO_STRIDE": "4", "GROUNDLABEL_MAX_VIDEO_FRAMES": "900"})
    assert (read.video_stride, read.max_video_frames) == (4, 900)
    assert (PipelineSettings.from_env({}).video_stride, PipelineSettings.from_env({}).max_video_frames) == (1, 108_000)
    with pytest.raises(SettingsError, match="GROUNDLABEL_VIDEO_STRIDE='0' must be greater than 0"):
        PipelineSettings.from_env({"GROUNDLABEL_VIDEO_STRIDE": "0"})
    with pytest.raises(SettingsError, match="video stride must be a whole number of at least 1, got 0"):
        PipelineSettings(video_stride=0)


def test_a_video_file_cut_anywhere_fails_with_a_sentence(video):
    data = video[0].read_bytes()
    for share in (0.002, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.999):
        with pytest.raises(VideoError, match="truncated|not a readable video|no frames|no video stream"):
            list(VideoReader(data[: int(len(data) * share)], 10**8))


def test_a_cut_matroska_video_without_a_frame_count_is_caught_by_its_duration():
    data = encode(40, "matroska", size=64)
    assert len(list(VideoReader(data, 10**8))) == 40
    with pytest.raises(VideoError, match="breaks off after frame .* of the about 40 its duration lists"):
        list(VideoReader(data[: len(data) * 2 // 3], 10**8))


def test_a_video_with_a_stream_but_no_frames_fails_with_a_sentence():
    with pytest.raises(VideoError, match="no video stream with frames"):
        VideoReader(encode(0), 10**8)


def test_a_video_longer_than_the_frame_limit_is_refused_before_decoding_and_one_at_the_limit_is_read(shapes_pipeline):
    data = encode(12)
    assert len(list(VideoReader(data, 10**8, max_frames=12))) == 12
    with pytest.raises(VideoError, match="has 12 frames, over the limit of 10 .*GROUNDLABEL_MAX_VIDEO_FRAMES"):
        VideoReader(data, 10**8, max_frames=10)
    with pytest.raises(VideoError, match="over the limit of 10"):  # the pipeline's setting, before any detection
        track_video(with_settings(shapes_pipeline, max_video_frames=10), data, "red square")


def test_a_long_video_whose_header_says_nothing_stops_at_the_first_frame_past_the_limit():
    reader = VideoReader(encode(12, "matroska", {"live": "1"}), 10**8, max_frames=10)
    assert reader.expected == 0  # neither a frame count nor a duration
    with pytest.raises(VideoError, match="runs past 10 frames, the limit"):
        list(reader)
    assert reader.decoded == 10


def test_frames_of_an_odd_size_are_encoded_at_the_next_even_one(tmp_path):
    frames = [np.full((21, 33, 3), 40 * i, np.uint8) for i in range(3)]
    assert encode_mp4(iter(frames), tmp_path / "odd.mp4", 12.5) == 3
    reader = VideoReader(tmp_path / "odd.mp4", 10**6)
    decoded = list(reader)
    assert (reader.width, reader.height, reader.fps, len(decoded)) == (34, 22, 12.5, 3)
    assert np.abs(decoded[2].astype(int) - 80).max() <= 3
