"""Huge /predict bodies: Label Studio sends every selected task with all its predictions and annotations. Against a
real Label Studio, Retrieve Predictions on 20 tasks that hold big brush predictions and annotations stores one
prediction per task; a client that goes away mid-body costs one log line, no traceback."""

from __future__ import annotations

import logging
import socket
import time

import numpy as np
import pytest
from label_studio_sdk.converter.brush import mask2rle

from pipeline import LazyPipeline
from sync import BackendSettings
from sync.backend import _parse
from tests.labelstudio import BOX, SEGMENTER, TEXT, backend_app, png, predictions_per_task, serve
from tests.test_sync_backend import retrieve_predictions

TASKS, MASKS = 20, 10


@pytest.fixture(scope="module")
def ml_backend(pipeline, tmp_path_factory):
    settings = BackendSettings(
        box_threshold=BOX, text_threshold=TEXT, segmenter=SEGMENTER, state_dir=tmp_path_factory.mktemp("bodies")
    )
    with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url:
        yield url


def brush_regions(rng: np.random.Generator) -> list[dict]:
    """MASKS brush regions of 12 MP smooth blobs (what a real model draws), ~16,000 RLE numbers each."""
    yy, xx = np.ogrid[:3000, :4000]
    regions = []
    for i in range(MASKS):
        cx, cy, r = rng.integers(500, 3500), rng.integers(500, 2500), rng.integers(300, 900)
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r).astype(np.uint8) * 255
        value = {"format": "rle", "rle": mask2rle(mask), "brushlabels": ["cats"]}
        regions.append(
            {"id": f"r{i}", "from_name": "label2", "to_name": "image", "type": "brushlabels", "value": value}
        )
    return regions


def test_parsing_drops_brush_numbers_and_keeps_everything_else():
    body = b'{"tasks": [{"id": 3, "data": {"image": "/x.png", "note": "\\"rle\\": [1, 2]"}, "predictions": '
    body += b'[{"result": [{"value": {"format": "rle", "rle": [1, 2, 255], "brushlabels": ["cats"]}}]}]}]}'
    task = _parse(body, without_masks=True)["tasks"][0]
    assert task["id"] == 3 and task["data"] == {"image": "/x.png", "note": '"rle": [1, 2]'}
    assert task["predictions"][0]["result"][0]["value"] == {"format": "rle", "rle": [], "brushlabels": ["cats"]}
    assert _parse(body, without_masks=False)["tasks"][0]["predictions"][0]["result"][0]["value"]["rle"] == [1, 2, 255]


def test_retrieve_predictions_on_tasks_holding_big_brush_masks_stores_one_per_task(label_studio, ml_backend):
    project = label_studio.create_project()
    tasks = label_studio.upload_images(project, {f"t{i}.png": png(48, 32, seed=i) for i in range(TASKS)})
    regions = brush_regions(np.random.default_rng(0))
    old = [{"task": task, "result": regions, "model_version": "someone-else", "score": 0.5} for task in tasks]
    for start in range(0, TASKS, 5):  # a brush prediction and an annotation of MASKS 12 MP masks on every task
        label_studio.api("POST", f"/api/projects/{project}/import/predictions", json=old[start : start + 5])
    for task in tasks:
        label_studio.api("POST", f"/api/tasks/{task}/annotations/", json={"result": regions})
    label_studio.register_ml_backend(project, ml_backend)

    started = time.monotonic()
    stored = retrieve_predictions(label_studio, project, tasks)
    elapsed = time.monotonic() - started
    ours = {task: [p for p in got if p["model_version"].startswith("groundlabel-")] for task, got in stored.items()}
    assert all(len(found) == 1 for found in ours.values()), {task: len(found) for task, found in ours.items()}
    assert predictions_per_task(label_studio, project) == {task: 2 for task in tasks}
    print(f"Retrieve Predictions, {TASKS} tasks with {2 * MASKS} 12 MP brush masks each: {elapsed:.1f} s")


def test_a_client_gone_mid_body_costs_one_log_line_and_no_traceback(ml_backend, caplog):
    uvicorn = logging.getLogger("uvicorn")  # its errors (tracebacks) do not reach the root logger
    uvicorn.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO):
            host, port = ml_backend.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port))) as sock:
                head = f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                sock.sendall(f"{head}Content-Length: {50 << 20}\r\n\r\n".encode() + b'{"tasks": [' + b" " * (1 << 20))
                time.sleep(0.5)
            deadline = time.monotonic() + 10
            while not any("closed the connection" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
                time.sleep(0.1)
            time.sleep(0.5)  # a traceback, if any, would be logged by now
    finally:
        uvicorn.removeHandler(caplog.handler)
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and lines[0].exc_info is None, [(r.name, r.getMessage()) for r in lines]
    assert "/predict: the client closed the connection after sending 1.0 MB" in lines[0].getMessage()
