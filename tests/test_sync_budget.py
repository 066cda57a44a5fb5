"""The time budget of a batch ``/predict``: no work is started that would end past it, so the answer comes in
time even when every forward is slow and the CPU is busy; the rest is finished in the background."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import httpx

from pipeline import LazyPipeline
from sync import BackendSettings
from sync.tasks import Budget
from tests.counting import count_calls
from tests.labelstudio import BOX, TEXT, backend_app, png, predictions_per_task, serve

CONFIG = """<View><Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image"><Label value="cats"/><Label value="house"/></RectangleLabels></View>"""
BUDGET, SLOW = 8.0, 3.0  # seconds a batch may take; seconds added to every detector forward


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_stops_before_a_unit_that_would_end_past_it_and_follows_slower_units():
    clock = Clock()
    budget, drawn = Budget(3.5, clock), []

    def units(seconds: list[float]) -> Iterator[int]:
        for number, spent in enumerate(seconds):
            clock.now += spent
            drawn.append(number)
            yield number

    source = units([1.0, 1.0, 1.0, 1.0])
    assert list(budget.paced(source)) == [0, 1, 2] and drawn == [0, 1, 2]  # a fourth would end at 4 s
    assert clock.now == 3.0 and next(source) == 3  # the rest stays in the source, not started

    clock, drawn[:] = Clock(), []
    budget = Budget(9.0, clock)
    # the machine gets busy at the fourth unit: 7 s + an estimate of 2.5 s stops (a plain mean, 1.75 s, would not)
    assert list(budget.paced(units([1.0, 1.0, 1.0, 4.0, 4.0]))) == [0, 1, 2, 3] and budget.estimate == 2.5


@contextlib.contextmanager
def busy_cpu() -> Iterator[None]:
    """A process spinning on each core while the block runs."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_a_batch_answers_within_its_budget_with_slow_forwards_and_a_busy_cpu(label_studio, pipeline, tmp_path):
    settings = BackendSettings(
        label_studio_url=label_studio.url,
        label_studio_token=label_studio.token,
        box_threshold=BOX,
        text_threshold=TEXT,
        segmenter=None,
        state_dir=tmp_path,
        predict_budget=BUDGET,
    )
    project = label_studio.create_project(CONFIG, title="slow budget")
    ids = label_studio.upload_images(project, {f"s{i}.png": png(40, 32, seed=600 + i) for i in range(5)})
    tasks = [{"id": task, "data": label_studio.api("GET", f"/api/tasks/{task}")["data"]} for task in ids]
    body = {"tasks": tasks, "project": f"{project}.1", "label_config": CONFIG, "params": {"context": None}}

    with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url:
        with count_calls(pipeline.detector.model, delay=SLOW) as forwards:
            with busy_cpu():
                started = time.monotonic()
                answer = httpx.post(f"{url}/predict", json=body, timeout=100).json()["results"]
                elapsed = time.monotonic() - started
            deadline = time.monotonic() + 120
            while httpx.get(f"{url}/health", timeout=5).json()["background"]["tasks"] and time.monotonic() < deadline:
                time.sleep(0.5)

    print(f"answered in {elapsed:.2f} s of a {BUDGET:g} s budget; {sum(r != [] for r in answer)} tasks in time")
    assert elapsed <= BUDGET * 1.1
    assert answer[0] != [] and answer[-1] == []  # what fits in time, "nothing yet" for the rest
    assert forwards.count == len(ids)  # the rest ran in the background, once each
    later = [task for task, result in zip(ids, answer) if result == []]  # this answer is not stored: not via LS
    assert predictions_per_task(label_studio, project) == Counter({task: 1 for task in later})
