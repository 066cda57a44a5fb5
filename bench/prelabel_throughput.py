"""Pre-annotation throughput: ``sync.prelabel`` vs a naive sequential loop over /predict, on a real local
Label Studio with N uploaded 640x480 JPEG tasks.

The naive loop is what a script around Label Studio's ML-backend API does: per task, POST /predict, then POST
the prediction to Label Studio. Both use the same pipeline with caches cleared, boxes only.
Goal (issue 5): at least 1.3x the naive loop's images/s.
Run: ``python -m bench.prelabel_throughput [--tasks 50] [--shape tiny|real] [--check] [--update-docs]`` (tiny: the test-size models, where
the non-model work dominates; real: grounding-dino-tiny's shape, where the model does).
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
from pipeline import LazyPipeline
from sync import BackendSettings, LabelStudioClient, Outbox
from sync.backend import create_router
from sync.prelabel import PrelabelJob, prelabel
from sync.testing import running_label_studio, serve

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="label" toName="image"><Label value="dog"/><Label value="cat"/></RectangleLabels></View>"""
FASTER = Goal("vs naive", ">=", 1.3, "x")  # issue 5


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def naive_loop(label_studio, backend: str, project: int) -> float:
    start = time.perf_counter()
    tasks = label_studio.api("GET", "/api/tasks", params={"project": project, "page_size": 1000})["tasks"]
    for task in tasks:
        reply = httpx.post(
            f"{backend}/predict",
            timeout=600,
            json={"tasks": [task], "project": f"{project}.1", "label_config": CONFIG, "params": {"context": None}},
        )
        prediction = reply.json()["results"][0]
        label_studio.api("POST", "/api/predictions", json={"task": task["id"], **prediction})
    return len(tasks) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_check_arguments(parser)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--shape", choices=("tiny", "real"), default="tiny")
    args = parser.parse_args(argv)
    detector, _ = real_models(shape=args.shape)
    pipeline = load_pipeline(detector, {})
    app = FastAPI()
    app.include_router(
        create_router(
            LazyPipeline(pipeline=pipeline), BackendSettings(segmenter=None, state_dir=Path(tempfile.mkdtemp()))
        )
    )
    files = {f"photo{i:03d}.jpg": jpeg(i) for i in range(args.tasks)}
    with running_label_studio(os.environ) as label_studio, serve(app) as backend:
        naive_project = label_studio.create_project(CONFIG, title="naive loop")
        label_studio.upload_images(naive_project, files)
        httpx.post(
            f"{backend}/setup",
            json={
                "project": f"{naive_project}.1",
                "schema": CONFIG,
                "hostname": label_studio.url,
                "access_token": label_studio.token,
            },
        )
        clear_caches(pipeline)
        naive = naive_loop(label_studio, backend, naive_project)

        project = label_studio.create_project(CONFIG, title="prelabel")
        label_studio.upload_images(project, files)
        clear_caches(pipeline)
        with LabelStudioClient(label_studio.url, label_studio.token) as client:
            start = time.perf_counter()
            progress = prelabel(
                client, pipeline, PrelabelJob(project, prompt="dog. cat"), Outbox(Path(tempfile.mkdtemp()))
            )
            ours = progress.done / (time.perf_counter() - start)
        assert progress.done == args.tasks, progress.summary()
    table = Table(
        "prelabel_throughput",
        f"Pre-annotation throughput, {args.tasks} tasks (640x480 JPEG uploads), {args.shape} models, boxes only",
        ("method", "images/s", "vs naive"),
    )
    table.add("naive loop: /predict + POST /api/predictions per task", f"{naive:.2f}", "1.00x")
    table.add(
        "python -m sync.prelabel (prefetch + batched writes)",
        f"{ours:.2f}",
        f"{ours / naive:.2f}x",
        checks=[(FASTER, ours / naive)],
    )
    finish(args, table)


if __name__ == "__main__":
    main()
