"""/predict wall time vs model time alone for one task: what download, decode, conversion and RLE cost.

A real local Label Studio holds the task (an uploaded 640x480 JPEG); groundlabel's ML backend answers /predict
for it the way Label Studio calls it. Model time is the same pipeline call on the same image in this process,
with caches cleared before each measurement so both do the full work.
Run: ``python -m bench.server_overhead [--segmenter mobile_sam] [--repeats 3]``.
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

from bench.common import load_pipeline, print_table, real_models
from pipeline import GroundingPipeline, LazyPipeline, Options, load_image
from sync import BackendSettings
from sync.backend import create_router
from sync.testing import GROUNDING_DINO_CONFIG, running_label_studio, serve

PROMPT = "cats. house"


def clear_caches(pipeline: GroundingPipeline) -> None:
    pipeline.detector._raw_cache.clear()
    for name in pipeline.segmenters.loaded:
        segmenter = pipeline.segmenters.get(name)
        segmenter._embeddings.clear()
        segmenter._masks.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--segmenter", default="mobile_sam")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--boxes", type=int, default=10, help="detections kept (the box threshold is set for it)")
    args = parser.parse_args()
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
        task_id = label_studio.upload_images(project, {"photo.jpg": buffer.getvalue()})[0]
        task = label_studio.api("GET", f"/api/tasks/{task_id}")
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
            "tasks": [task],
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
        for _ in range(args.repeats):
            clear_caches(pipeline)
            start = time.perf_counter()
            reply = httpx.post(f"{backend}/predict", json=body, timeout=600)
            walls.append(time.perf_counter() - start)
            assert reply.status_code == 200 and len(reply.json()["results"]) == 1, reply.text
            clear_caches(pipeline)
            start = time.perf_counter()
            pipeline(image, PROMPT, Options(box_threshold, segmenter=args.segmenter))
            models.append(time.perf_counter() - start)
    wall, model = float(np.median(walls)), float(np.median(models))
    print_table(
        f"/predict vs model time, one 640x480 task, {args.boxes} boxes + {args.segmenter} masks "
        f"(median of {args.repeats})",
        ("/predict wall", "model alone", "server overhead", "overhead / model time"),
        [
            (
                f"{wall * 1000:.0f} ms",
                f"{model * 1000:.0f} ms",
                f"{(wall - model) * 1000:.0f} ms",
                f"{100 * (wall - model) / model:.1f} %",
            )
        ],
    )


if __name__ == "__main__":
    main()
