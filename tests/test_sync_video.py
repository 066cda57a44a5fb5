"""A Label Studio video project: a text prompt becomes one ``videorectangle`` region per tracked shape, its keyframes
in Label Studio's 1-based frame numbering and percent of the frame, thinned where the motion is steady; Retrieve
Predictions finishes videos in the background, and Label Studio's own export reads the regions back. The detector
runs on every second frame (``video_stride=2``), so /setup and sync.prelabel must name the version it writes."""

from __future__ import annotations

import time
from dataclasses import replace

import httpx
import numpy as np
import pytest

from pipeline import GroundingPipeline, LazyPipeline, Options
from pipeline.testing import shapes as S
from pipeline.testing.video_scenes import frames_of, prompt_for, write_video
from pipeline.video import Track, VideoInfo, VideoTracks
from sync import BackendSettings, ProjectConfig
from sync.convert import video_to_label_studio
from sync.errors import ConfigError
from sync.prelabel import PrelabelJob, _parser, _settings, main, prelabel
from sync.push import Outbox
from sync.regions import video_sequence
from tests.labelstudio import backend_app, prompt_context, serve

FRAMES, FPS = 40, 24


def video_config(labels: list[str]) -> str:
    """Label Studio's video tracking template with a prompt box."""
    return f"""<View>
  <Video name="video" value="$video" framerate="{FPS}"/>
  <VideoRectangle name="box" toName="video"/>
  <Labels name="videoLabels" toName="video">{"".join(f'<Label value="{label}"/>' for label in labels)}</Labels>
  <TextArea name="prompt" toName="video" editable="true" rows="1"/>
</View>"""


VIDEO_CONFIG = video_config(["red square", "blue circle"])


def corners(keyframe: dict, width: int, height: int) -> np.ndarray:
    """A keyframe's box in pixels, xyxy."""
    x, y = keyframe["x"] / 100 * width, keyframe["y"] / 100 * height
    return np.array([x, y, x + keyframe["width"] / 100 * width, y + keyframe["height"] / 100 * height])


def shown_at(sequence: list[dict], frame: int) -> np.ndarray | None:
    """The percent box Label Studio shows on ``frame``: linear between keyframes, none past a disabled one."""
    for before, after in zip(sequence, sequence[1:]):
        if before["frame"] <= frame <= after["frame"] and before["enabled"]:
            share = (frame - before["frame"]) / (after["frame"] - before["frame"])
            return np.array([before[k] + share * (after[k] - before[k]) for k in ("x", "y", "width", "height")])
    return None


def test_steady_motion_needs_two_keyframes_and_a_turn_one_more_and_the_last_ends_the_track():
    frames = np.arange(1, 21)
    steady = np.array([[2 * f, 10, 2 * f + 30, 40] for f in frames], float)
    keys = video_sequence(frames, steady, 200, 100, 24.0)
    assert [k["frame"] for k in keys] == [1, 20] and [k["enabled"] for k in keys] == [True, False]
    assert keys[0]["time"] == pytest.approx(1 / 24, abs=1e-5) and set(keys[0]) == {
        "frame",
        "enabled",
        "rotation",
        "x",
        "y",
        "width",
        "height",
        "time",
    }
    turning = np.array([[2 * min(f, 10), 10 + 3 * max(0, f - 10), 2 * min(f, 10) + 30, 40] for f in frames], float)
    keys = video_sequence(frames, turning, 200, 100, 24.0)
    assert [k["frame"] for k in keys] == [1, 10, 20]
    for frame, box in zip(frames, turning):  # what Label Studio interpolates is within 0.5 % of every box
        percent = np.array([box[0] / 2, box[1], (box[2] - box[0]) / 2, box[3] - box[1]])
        assert np.abs(shown_at(keys, frame) - percent).max() <= 0.5 if frame < 20 else True


def test_decoded_frames_become_label_studio_frames_at_the_configs_frame_rate():
    track = Track(1, "red square", "red square", np.array([0, 2, 4]), np.array([[0, 0, 10, 10]] * 3, float), np.ones(3))
    tracks = VideoTracks(VideoInfo(100, 50, 12.0, 6), [track], stride=2, model_version="groundlabel-x")
    config = ProjectConfig.parse(VIDEO_CONFIG)  # the <Video> says 24 frames/s: twice the video's 12
    (region,) = video_to_label_studio(tracks, config, config.framerate_for({})).result
    assert [k["frame"] for k in region["value"]["sequence"]] == [1, 9]  # frames 0 and 4 at 12/s
    assert region["value"]["framesCount"] == 12 and region["value"]["duration"] == 0.5
    assert region["value"]["labels"] == ["red square"] and (region["from_name"], region["to_name"]) == ("box", "video")


def test_a_video_config_is_read_with_its_labels_and_frame_rate_and_one_without_a_video_rectangle_is_refused():
    config = ProjectConfig.parse(VIDEO_CONFIG.replace(f'framerate="{FPS}"', 'framerate="$fps"'))
    assert config.video and config.image_key == "video" and config.prompt == "prompt"
    assert "red square" in config.labels and config.framerate_for({"fps": 30}) == 30.0
    assert config.framerate_for({}) == 24.0  # Label Studio's default for an unusable rate
    with pytest.raises(ConfigError, match="no <VideoRectangle>"):
        ProjectConfig.parse(
            '<View><Video name="v" value="$v"/><Labels name="l" toName="v"><Label value="a"/></Labels></View>'
        )


@pytest.fixture(scope="module")
def shapes_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "shapes.mp4"
    shapes, truth = write_video(path, seed=1, frames=FRAMES, fps=FPS)
    return path, shapes, truth


@pytest.fixture(scope="module")
def shapes_pipeline():
    """The toy detector on every second frame, as GROUNDLABEL_VIDEO_STRIDE=2 sets it."""
    pipeline = S.load_shapes_pipeline()
    return GroundingPipeline(pipeline.detector, pipeline.segmenters, replace(pipeline.settings, video_stride=2))


@pytest.fixture(scope="module")
def video_backend(label_studio, shapes_pipeline, tmp_path_factory):
    settings = BackendSettings(
        label_studio_url=label_studio.url,
        label_studio_token=label_studio.token,
        box_threshold=S.SHAPES_BOX_THRESHOLD,
        text_threshold=S.SHAPES_TEXT_THRESHOLD,
        segmenter=None,
        state_dir=tmp_path_factory.mktemp("video-state"),
    )
    with serve(backend_app(LazyPipeline(pipeline=shapes_pipeline), settings)) as url:
        yield url


def as_shown(region: dict) -> dict[int, np.ndarray]:
    """Label Studio's frame -> the region's percent box on it, interpolated as its editor does."""
    shown = {frame: shown_at(region["value"]["sequence"], frame) for frame in range(1, FRAMES + 1)}
    return {frame: box for frame, box in shown.items() if box is not None}


def as_exported(region: dict) -> dict[int, np.ndarray]:
    """Label Studio's frame -> the percent box its export wrote for it (with ``interpolate_key_frames``)."""
    return {k["frame"]: np.array([k["x"], k["y"], k["width"], k["height"]]) for k in region["value"]["sequence"]}


def assert_regions_follow_the_shapes(regions: list[dict], shapes, truth, boxes=as_shown) -> None:
    """One region per shape, with its name, its boxes (``boxes(region)``, frame by frame) on that shape's drawn box
    on the same frame (decoded frame ``i`` is Label Studio's frame ``i + 1``)."""
    assert sorted(r["value"]["labels"][0] for r in regions) == sorted(s.name for s in shapes)
    by_frame = frames_of(truth)
    hits = total = 0
    for region in regions:
        (name,) = region["value"]["labels"]
        assert region["value"]["framesCount"] == FRAMES
        for frame, percent in boxes(region).items():
            drawn = [b.xyxy for b in by_frame.get(frame - 1, []) if b.name == name]
            if drawn:
                box = corners(dict(zip(("x", "y", "width", "height"), percent)), 160, 160)
                total += 1
                hits += S.box_iou(box, drawn[0])[0, 0] >= 0.5
    assert total >= 0.8 * len(truth) and hits >= 0.9 * total, (hits, total, len(truth))


def test_retrieve_predictions_on_a_video_task_stores_one_tracked_region_per_shape_and_the_export_reads_it(
    label_studio, video_backend, shapes_video
):
    path, shapes, truth = shapes_video
    project = label_studio.create_project(video_config([s.name for s in shapes]), title="video tracks")
    (task,) = label_studio.upload_images(project, {"shapes.mp4": path.read_bytes()})
    label_studio.register_ml_backend(project, video_backend)

    label_studio.api(
        "POST",
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": project},
        json={"selectedItems": {"all": False, "included": [task]}},
    )
    deadline, stored = time.monotonic() + 180, []
    while not stored and time.monotonic() < deadline:  # a video is always finished in the background
        time.sleep(1)
        stored = label_studio.api("GET", "/api/predictions", params={"task": task})

    (prediction,) = stored
    assert {r["type"] for r in prediction["result"]} == {"videorectangle"}
    assert_regions_follow_the_shapes(prediction["result"], shapes, truth)
    assert all(not r["value"]["sequence"][-1]["enabled"] for r in prediction["result"])
    # accepted as an annotation, Label Studio's JSON export interpolates the keyframes itself, frame by frame
    label_studio.api("POST", f"/api/tasks/{task}/annotations", json={"result": prediction["result"]})
    (row,) = label_studio.api(
        "GET", f"/api/projects/{project}/export", params={"exportType": "JSON", "interpolate_key_frames": "true"}
    )
    assert_regions_follow_the_shapes(row["annotations"][0]["result"], shapes, truth, boxes=as_exported)


def test_an_interactive_prompt_on_a_video_task_answers_its_tracks(label_studio, video_backend, shapes_video):
    path, shapes, truth = shapes_video
    project = label_studio.create_project(video_config([s.name for s in shapes]), title="video prompt")
    (task,) = label_studio.upload_images(project, {"shapes.mp4": path.read_bytes()})
    ml_id = label_studio.register_ml_backend(project, video_backend)
    context = prompt_context(prompt_for(shapes))
    for item in context["result"]:
        item["to_name"] = "video"

    answer = label_studio.api(
        "POST", f"/api/ml/{ml_id}/interactive-annotating", json={"task": task, "context": context}
    )["data"]

    assert_regions_follow_the_shapes(answer["result"], shapes, truth)


def test_a_batch_predict_on_video_answers_nothing_yet_and_writes_the_tracks_from_the_background(
    label_studio, video_backend, shapes_video
):
    path, shapes, truth = shapes_video
    config = video_config([s.name for s in shapes])
    project = label_studio.create_project(config, title="video background")
    (task,) = label_studio.upload_images(project, {"shapes.mp4": path.read_bytes()})
    data = label_studio.api("GET", f"/api/tasks/{task}")["data"]
    body = {"tasks": [{"id": task, "data": data}], "project": f"{project}.1", "label_config": config}

    answer = httpx.post(f"{video_backend}/predict", json={**body, "params": {"context": None}}, timeout=60).json()

    assert answer == {"results": [[]]}  # Label Studio stores nothing from this answer: a video takes minutes
    deadline, stored = time.monotonic() + 180, []
    while not stored and time.monotonic() < deadline:
        time.sleep(1)
        stored = label_studio.api("GET", "/api/predictions", params={"task": task})
    assert_regions_follow_the_shapes(stored[0]["result"], shapes, truth)
    setup = {"project": f"{project}.1", "schema": config}  # what Label Studio compares before predicting again
    assert stored[0]["model_version"] == httpx.post(f"{video_backend}/setup", json=setup).json()["model_version"]
    assert "-stride2-" in stored[0]["model_version"]


def test_prelabel_tracks_a_video_project_once_and_a_rerun_skips_it(
    label_studio, ls_client, shapes_pipeline, shapes_video, tmp_path
):
    path, shapes, truth = shapes_video
    project = label_studio.create_project(video_config([s.name for s in shapes]), title="video prelabel")
    (task,) = label_studio.upload_images(project, {"shapes.mp4": path.read_bytes()})
    options = Options(S.SHAPES_BOX_THRESHOLD, S.SHAPES_TEXT_THRESHOLD)

    outbox = Outbox(tmp_path / "outbox")
    first = prelabel(ls_client, shapes_pipeline, PrelabelJob(project, options=options), outbox)
    again = prelabel(ls_client, shapes_pipeline, PrelabelJob(project, options=options), outbox)

    assert (first.done, first.failed, again.done, again.skipped) == (1, {}, 0, 1)
    (prediction,) = label_studio.api("GET", "/api/predictions", params={"task": task})
    assert "-stride2-" in prediction["model_version"]
    assert_regions_follow_the_shapes(prediction["result"], shapes, truth)


def test_prelabels_video_stride_flag_overrides_the_environment_and_a_bad_one_stops_it_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("GROUNDLABEL_VIDEO_STRIDE", "2")
    assert _settings(_parser().parse_args(["--project", "1"])).pipeline.video_stride == 2
    assert _settings(_parser().parse_args(["--project", "1", "--video-stride", "5"])).pipeline.video_stride == 5
    assert main(["--project", "1", "--video-stride", "0"]) == 2  # before any connection to Label Studio
    assert "video stride must be a whole number of at least 1" in capsys.readouterr().err
