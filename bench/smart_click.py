"""Click-to-mask latency of the ML backend: a smart keypoint in Label Studio -> /predict -> a brush region.

A real local Label Studio holds the task (an uploaded 1600x1200 JPEG, 1.9 MP); the backend answers /predict with
the body Label Studio sends for a smart keypoint. A cold click is the first on the image (download, decode, image
encoder, mask decoder, RLE); a warm click is any later one, at a new point each time so the mask cache does not
answer (image from the URL cache, embedding from its cache: only the mask decoder and the conversion run).

Random weights make speckled masks (hundreds of thousands of RLE runs where a real object's mask has a few
thousand), and label-studio-sdk's RLE encoder is a Python loop over runs, so the warm click is also split in this
process into mask decoder, conversion of the speckled mask, and conversion of a smooth mask of the same area: the
last row estimates a click with real weights (measured round trip - speckled conversion + smooth conversion).
Run: ``python -m bench.smart_click [--segmenter mobile_sam] [--clicks 10] [--threads 2]``.
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
import torch
from fastapi import FastAPI
from PIL import Image

from bench.common import load_pipeline, print_table, real_models, timed
from pipeline import LazyPipeline, MaskPrompt, load_image
from sync import BackendSettings, ProjectConfig
from sync.backend import create_router
from sync.smart import SmartRequest
from sync.testing import SMART_TOOLS_CONFIG, running_label_studio, serve

SIZE = (1600, 1200)


def photo(seed: int) -> bytes:
    """A JPEG with smooth structure (what photos compress like), not noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize(SIZE, Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def click_body(task: dict, project: int, x: float, y: float) -> dict:
    point = {
        "id": f"k{x:.0f}{y:.0f}",
        "from_name": "click",
        "to_name": "image",
        "type": "keypointlabels",
        "original_width": SIZE[0],
        "original_height": SIZE[1],
        "image_rotation": 0,
        "is_positive": True,
        "value": {"x": x, "y": y, "width": 0.5, "keypointlabels": ["cats"]},
    }
    return {
        "tasks": [task],
        "project": f"{project}.1",
        "label_config": SMART_TOOLS_CONFIG,
        "params": {"context": {"result": [point]}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--segmenter", default="mobile_sam")
    parser.add_argument("--clicks", type=int, default=10, help="warm clicks per image")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the issue's target: 2 cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    detector, checkpoints = real_models([args.segmenter])
    pipeline = load_pipeline(detector, checkpoints)
    settings = BackendSettings(segmenter=args.segmenter, state_dir=Path(tempfile.mkdtemp()))
    app = FastAPI()
    app.include_router(create_router(LazyPipeline(pipeline=pipeline), settings))
    rng = np.random.default_rng(0)
    cold, warm = [], []
    with running_label_studio(os.environ) as label_studio, serve(app) as backend, httpx.Client(timeout=600) as http:
        project = label_studio.create_project(SMART_TOOLS_CONFIG, title="smart click bench")
        ids = label_studio.upload_images(project, {f"photo{i}.jpg": photo(i) for i in range(args.images)})
        http.post(
            f"{backend}/setup",
            json={
                "project": f"{project}.1",
                "schema": SMART_TOOLS_CONFIG,
                "hostname": label_studio.url,
                "access_token": label_studio.token,
            },
        )
        for task_id in ids:
            task = label_studio.api("GET", f"/api/tasks/{task_id}")
            for i in range(args.clicks + 1):
                body = click_body(task, project, *rng.uniform(10, 90, 2))
                start = time.perf_counter()
                reply = http.post(f"{backend}/predict", json=body)
                (cold if i == 0 else warm).append(time.perf_counter() - start)
                assert reply.status_code == 200, reply.text
    decoder, speckled, smooth, runs = warm_parts(pipeline, args.segmenter, rng)
    cold_ms, warm_ms = 1000 * float(np.median(cold)), 1000 * float(np.median(warm))
    real_ms = warm_ms - speckled + smooth
    print_table(
        f"Smart-keypoint /predict round trip, {SIZE[0]}x{SIZE[1]} JPEG, {args.segmenter}, {args.threads} threads "
        f"(median over {args.images} images; warm: {args.clicks} clicks each at new points)",
        ("", "time", "/ cold click"),
        [
            ("first click (cold): download, decode, encoder, decoder, RLE", f"{cold_ms:.0f} ms", "1"),
            ("later click (warm), random weights", f"{warm_ms:.0f} ms", f"{warm_ms / cold_ms:.3f}"),
            ("  of which: mask decoder (in process)", f"{decoder:.0f} ms", ""),
            (f"  of which: conversion + RLE of its speckled mask ({runs[0]:,} RLE ints)", f"{speckled:.0f} ms", ""),
            (f"conversion + RLE of a smooth mask of the same area ({runs[1]:,} RLE ints)", f"{smooth:.0f} ms", ""),
            ("later click (warm), smooth mask (estimate)", f"{real_ms:.0f} ms", f"{real_ms / cold_ms:.3f}"),
        ],
    )


def warm_parts(pipeline, name: str, rng: np.random.Generator) -> tuple[float, float, float, tuple[int, int]]:
    """In-process milliseconds of a warm click: (mask decoder, conversion of its mask, conversion of a smooth
    disc of the same area) and the RLE lengths of both masks."""
    image = load_image(photo(0))
    segmenter = pipeline.segmenters.get(name)
    segmenter.embed(image)
    points = iter(rng.uniform(100, 1100, (100, 2)))
    decoder = 1000 * timed(
        lambda: segmenter.decode_with_scores(image, [MaskPrompt(points=(tuple(next(points)),), positive=(True,))]),
        repeats=5,
    )
    mask = segmenter.decode(image, [MaskPrompt(points=((800, 600),), positive=(True,))])[0]
    yy, xx = np.mgrid[: SIZE[1], : SIZE[0]]
    disc = (xx - 800) ** 2 + (yy - 600) ** 2 <= max(mask.sum(), 1) / np.pi
    config = ProjectConfig.parse(SMART_TOOLS_CONFIG)
    request = SmartRequest("cats", ((50.0, 50.0),), (True,))
    answers = [request.answer(config, m, 0.9, "bench") for m in (mask, disc)]
    speckled, smooth = (
        1000 * timed(lambda m=m: request.answer(config, m, 0.9, "bench"), repeats=3) for m in (mask, disc)
    )
    return decoder, speckled, smooth, tuple(len(a.result[0]["value"]["rle"]) for a in answers)


if __name__ == "__main__":
    main()
