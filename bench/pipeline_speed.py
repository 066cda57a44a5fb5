"""Where the pipeline's time goes, and what the caches save: prints a markdown table.

Models have the real architectures (grounding-dino-tiny shape, MobileSAM vit_t, SAM vit_b) with random weights,
so timings reflect real compute. Run: ``python -m bench.pipeline_speed [--segmenters mobile_sam sam_vit_b]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from pipeline import GroundingPipeline, load_image
from tests.models import save_grounding_dino, save_segmenter

PROMPT_A = "brown dog. possum on a fence"
PROMPT_B = "cat. red car"


def timed(function, repeats: int = 1) -> float:
    """Median wall time in seconds over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build_models(root: Path, segmenters: list[str]) -> tuple[Path, dict[str, str]]:
    detector = root / "gdino-real"
    if not (detector / "config.json").exists():
        save_grounding_dino(detector, "real")
    checkpoints = {}
    for name in segmenters:
        path = root / f"{name}.pth"
        if not path.exists():
            save_segmenter(path, name)
        checkpoints[name] = str(path)
    return detector, checkpoints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--segmenters", nargs="*", default=["mobile_sam", "sam_vit_b"])
    parser.add_argument("--size", default="640x480", help="image WxH")
    parser.add_argument("--boxes", type=int, default=5, help="boxes per prompt sent to the segmenter")
    parser.add_argument("--repeats", type=int, default=20, help="repeats of the cached (fast) measurements")
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "groundlabel-bench-models")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    detector_dir, checkpoints = build_models(args.models, args.segmenters)
    pipeline = GroundingPipeline.from_pretrained(str(detector_dir), checkpoints=checkpoints)
    image = load_image(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))
    rows = []

    full = timed(lambda: pipeline(image, PROMPT_A, box_threshold=0.3))
    thresholds = iter(np.linspace(0.05, 0.9, args.repeats))
    refilter = timed(lambda: pipeline(image, PROMPT_A, box_threshold=float(next(thresholds))), args.repeats)
    rows.append(("threshold change on a cached result (boxes)", refilter, full))

    for name in args.segmenters:
        segmenter = pipeline.segmenters.get(name)
        boxes_a = pipeline(image, PROMPT_A, box_threshold=0.0).xyxy[: args.boxes]
        boxes_b = pipeline(image, PROMPT_B, box_threshold=0.0).xyxy[: args.boxes] + 0.5  # never the same boxes
        first = timed(lambda: segmenter.segment(image, boxes_a))
        second = timed(lambda: segmenter.segment(image, boxes_b))
        rows.append((f"second prompt's mask stage vs first ({name}, {args.boxes} boxes)", second, first))
        masks_thresholds = iter(np.linspace(0.05, 0.9, args.repeats))
        pipeline(image, PROMPT_A, box_threshold=0.0, segmenter=name)
        cached = timed(lambda: pipeline(image, PROMPT_A, box_threshold=float(next(masks_thresholds)), segmenter=name),
                       args.repeats)
        rows.append((f"threshold change on a cached result (boxes + {name} masks)", cached, full + first))

    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {pipeline.detector.device}; image {width}x{height}\n")
    print("| measurement | cached / second | full / first | ratio |")
    print("|---|---:|---:|---:|")
    for name, fast, slow in rows:
        print(f"| {name} | {fast * 1000:.1f} ms | {slow * 1000:.0f} ms | {slow / fast:.0f}x faster |")


if __name__ == "__main__":
    main()
