"""/predict wall time vs model time alone for one task: what download, decode, conversion and RLE cost.

A real local Label Studio holds the tasks (one uploaded 640x480 JPEG per repeat, the same bytes under another URL:
the backend keeps decoded images by URL, so a task asked for again would skip the download and decode measured
here); groundlabel's ML backend answers /predict for each the way Label Studio calls it. Model time is the same
pipeline call on the same image in this process, right after, with the model caches cleared before each
measurement so both do the full work. Goal (issue 5): the overhead is at most 10 % of the model time.
Run: ``python -m bench.server_overhead [--segmenter mobile_sam] [--repeats 3] [--check] [--update-docs]``.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from fastapi import FastAPI
from PIL import Image

from bench.common import Goal, Table, add_check_arguments, clear_caches, finish, load_pipeline, real_models
from pipeline import LazyPipeline, Options, load_image
from sync import BackendSettings
from sync.backend import create_router
from sync.testing import GROUNDING_DINO_CONFIG, running_label_studio, serve

PROMPT = "cats. house"
OVERHEAD = Goal("overhead / model time", "<=", 0.10)


def main(argv: list[str] | None = None) -> None:
    parser = add_check_arguments(argparse.ArgumentParser(description=__doc__))
    parser.add_argument("--segmenter", default="mobile_sam")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--boxes", type=int, default=10, help="detections kept (the box threshold is set for it)")
    args = parser.parse_args(argv)
    detector, checkpoints = real_models([args.segmenter])
    pipeline = load_pipeline(detector, checkpoints)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(buffer, "JPEG")
    image = load_image(buffer.getvalue())  # decoding is part of the server's overhead, not of the model time
    # Random weights score hundreds of boxes high; keep as many as a real model finds on a photo.
    scores = np.sort(pipeline(image, PROMPT, Options(0.0)).scores)[::-1]
    box_threshold = float(scores[args.boxes - 1] + scores[args.boxes]) / 2
    settings = BackendSettings(
        segmenter=args.segmenter, box_threshold=box_threshold, state_dir=Path(tempfile.mkdtemp())
    )
    app = FastAPI()
    app.include_router(create_router(LazyPipeline(pipeline=pipeline), settings))
    with running_label_studio(os.environ) as label_studio, serve(app) as backend:
        project = label_studio.create_project(GROUNDING_DINO_CONFIG, title="overhead bench")
        files = {f"photo{i}.jpg": buffer.getvalue() for i in range(args.repeats)}
        tasks = [label_studio.api("GET", f"/api/tasks/{i}") for i in label_studio.upload_images(project, files)]
        httpx.post(
            f"{backend}/setup",
            json={
                "project": f"{project}.1",
                "schema": GROUNDING_DINO_CONFIG,
                "hostname": label_studio.url,
                "access_token": label_studio.token,
            },
        )
        body = {
            "tasks": [],
            "project": f"{project}.1",
            "label_config": GROUNDING_DINO_CONFIG,
            "params": {
                "context": {
                    "result": [
                        {"from_name": "prompt", "to_name": "image", "type": "textarea", "value": {"text": [PROMPT]}}
                    ]
                }
            },
        }
        walls, models = [], []
        for task in tasks:  # a URL the backend has not seen: downloaded and decoded
            clear_caches(pipeline)
            start = time.perf_counter()
            reply = httpx.post(f"{backend}/predict", json={**body, "tasks": [task]}, timeout=600)
            walls.append(time.perf_counter() - start)
            assert reply.status_code == 200 and len(reply.json()["results"]) == 1, reply.text
            clear_caches(pipeline)
            start = time.perf_counter()
            pipeline(image, PROMPT, Options(box_threshold, segmenter=args.segmenter))
            models.append(time.perf_counter() - start)
    wall, model = float(np.median(walls)), float(np.median(models))
    table = Table(
        "server_overhead",
        f"/predict vs model time, one 640x480 task, {args.boxes} boxes + {args.segmenter} masks "
        f"(median of {args.repeats}, a new task each)",
        ("/predict wall", "model alone", "server overhead", "overhead / model time"),
    )
    ratio = (wall - model) / model
    table.add(
        f"{wall * 1000:.0f} ms",
        f"{model * 1000:.0f} ms",
        f"{(wall - model) * 1000:.0f} ms",
        f"{ratio:.3f}",
        checks=[(OVERHEAD, ratio)],
    )
    finish(args, table)


if __name__ == "__main__":
    main()
