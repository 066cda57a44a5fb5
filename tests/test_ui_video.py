"""The video tab as a user drives it in chromium, on ``python app.py --demo``'s toy models: a generated video of
moving shapes and their names in, one track per shape out (table, annotated MP4, tracks JSON); Cancel keeps nothing."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from playwright.sync_api import expect

from pipeline import LazyPipeline
from pipeline.testing import shapes as S
from pipeline.testing.video_scenes import prompt_for, write_video
from pipeline.video import VideoReader
from sync import BackendSettings
from sync.testing import serve
from tests.browser import grid_row, grid_rows, set_slider
from tests.counting import count_calls

pytest_plugins = ["tests.browser"]

FRAMES = 36


@pytest.fixture(scope="module")
def toy_models():
    """The demo's toy models, loaded once: the tests count their detector's runs."""
    return LazyPipeline(pipeline=S.load_shapes_pipeline())


@pytest.fixture(scope="module")
def demo_url(toy_models, tmp_path_factory):
    from app import create_app

    settings = BackendSettings(state_dir=tmp_path_factory.mktemp("video-ui"))
    with serve(create_app(settings, models=toy_models, demo=True)) as url:
        yield url


def upload(page, path, prompt: str, stride: int | None = None) -> None:
    page.get_by_role("tab", name="Video").click()
    page.locator("#vd-video input[type=file]").set_input_files(str(path))
    page.locator("#vd-prompt textarea").fill(prompt)
    if stride is not None:
        set_slider(page, "#vd-stride", stride)


def test_a_video_and_a_prompt_give_one_track_per_moving_shape_drawn_on_the_video(open_page, demo_url, tmp_path):
    path = tmp_path / "shapes.mp4"
    shapes, _ = write_video(path, seed=1, frames=FRAMES)
    page = open_page(demo_url)
    upload(page, path, prompt_for(shapes), stride=2)

    page.locator("#vd-run").click()

    expect(page.locator("#vd-message")).to_contain_text(f"{len(shapes)} tracks for", timeout=60_000)
    expect(page.locator("#vd-message")).to_contain_text(f"in {FRAMES} frames")
    assert grid_rows(page, "#vd-table") == len(shapes)
    rows = [grid_row(page, "#vd-table", n) for n in range(1, len(shapes) + 1)]
    assert sorted(row[1] for row in rows) == sorted(s.name for s in shapes)
    assert all(int(row[2]) % 2 == 0 and int(row[3]) < FRAMES for row in rows)  # frames the detector saw

    with page.expect_download() as download:
        page.locator("#vd-download-json").click()
    tracks = json.loads(download.value.path().read_text())
    assert tracks["stride"] == 2 and sorted(t["label"] for t in tracks["tracks"]) == sorted(s.name for s in shapes)

    with page.expect_download() as download:
        page.locator("#vd-download-video").click()
    drawn = list(VideoReader(download.value.path().read_bytes(), 10**6))
    plain = list(VideoReader(path.read_bytes(), 10**6))
    assert len(drawn) == len(plain) == FRAMES and drawn[0].shape == plain[0].shape
    first = tracks["tracks"][0]["boxes"][0]  # the outline of a track's first box is drawn on its frame
    x0, y0, x1, _ = (int(round(v)) for v in first["box_xyxy"])
    edge = np.s_[max(y0, 0) : max(y0, 0) + 2, max(x0, 0) : x1]
    changed = np.abs(drawn[first["frame"]][edge].astype(int) - plain[first["frame"]][edge].astype(int)).mean()
    assert changed > 20, changed
    expect(page.locator("#vd-result video")).to_have_count(1)


def test_cancel_stops_a_running_track_and_keeps_nothing(open_page, demo_url, toy_models, tmp_path):
    path = tmp_path / "long.mp4"
    shapes, _ = write_video(path, seed=2, frames=400)
    page = open_page(demo_url)
    upload(page, path, prompt_for(shapes), stride=1)

    with count_calls(toy_models.get().detector.model) as forwards:
        page.locator("#vd-run").click()
        expect(page.locator("#vd-output")).to_contain_text("Tracking", timeout=60_000)  # the progress, in frames
        page.locator("#vd-cancel").click()
        expect(page.locator("#vd-message")).to_contain_text("Cancelled: nothing kept.")
        time.sleep(1)  # the batch running when Cancel came may end
        stopped_at = forwards.count
        time.sleep(2)
        assert forwards.count == stopped_at < 400  # no detector run since: the work stopped, not just its answer
    assert grid_rows(page, "#vd-table") == 0
    expect(page.locator("#vd-result video")).to_have_count(0)
    expect(page.locator("#vd-download-video")).to_be_disabled()


def test_a_cut_video_is_answered_with_a_sentence_and_nothing_to_download(open_page, demo_url, tmp_path):
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    shapes, _ = write_video(whole, seed=3, frames=24)
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # the index survives, half the frames not
    page = open_page(demo_url)
    upload(page, cut, prompt_for(shapes))

    page.locator("#vd-run").click()

    expect(page.locator("#vd-message")).to_contain_text("The video breaks off after frame")
    assert grid_rows(page, "#vd-table") == 0
    expect(page.locator("#vd-download-video")).to_be_disabled()
    expect(page.locator("#vd-download-json")).to_be_disabled()
