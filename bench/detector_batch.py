"""Images per detector forward: time per image for 1 vs N images of one size in a forward, and how far a batched
image's boxes move from its single run (padding-free batches should match to float noise; fp16 on a GPU a little
more). Goal (issue 9): a batched forward is not slower per image than single ones and finds every one of each
image's 20 best boxes again (within 1 px).

Run: ``python -m bench.detector_batch [--shape real|tiny] [--batch 4] [--device cuda] [--dtype float16] [--check]``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

from bench.common import Goal, Table, add_check_arguments, finish, real_models, timed
from pipeline import GroundingPipeline, Options, PipelineSettings, load_image

PROMPT = "brown dog. possum on a fence"
NOT_SLOWER = Goal("speed-up", ">=", 1.0, "x")
SAME_BOXES = Goal("found again", ">=", 100, " %")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_check_arguments(parser)
    parser.add_argument("--shape", choices=("tiny", "real"), default="real")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", default="640x480", help="image WxH")
    parser.add_argument("--device")
    parser.add_argument("--dtype")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    width, height = map(int, args.size.split("x"))
    detector, _ = real_models(shape=args.shape)
    settings = PipelineSettings(detector=str(detector), device=args.device, dtype=args.dtype, offline=True)
    pipeline = GroundingPipeline.from_settings(settings)
    rng = np.random.default_rng(0)
    images = [load_image(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)) for _ in range(args.batch)]
    options = Options(0.0, 0.0)

    def run(size: int) -> list:
        pipeline.detector._raw_cache.clear()
        pipeline.settings = replace(settings, batch_size=size)
        results = []
        for start in range(0, len(images), size):
            results += pipeline.batch(images[start : start + size], PROMPT, options)
        if pipeline.detector.device.type == "cuda":
            torch.cuda.synchronize()
        return results

    singles, again, batched = run(1), run(1), run(args.batch)  # warm-up, and the results to compare
    one = timed(lambda: run(1), args.repeats) / len(images)
    many = timed(lambda: run(args.batch), args.repeats) / len(images)
    device = f"{pipeline.detector.device} {str(pipeline.detector.dtype).replace('torch.', '')}"
    table = Table(
        "detector_batch",
        f"Detector forward per image, {args.shape} grounding-dino-tiny shape, {width}x{height}, {device}",
        (
            "images per forward",
            "ms per image",
            "speed-up",
            "top-20 boxes found again (<= 1 px)",
            "max score change, same query",
        ),
    )
    repeat, found = agreement(singles, again), agreement(singles, batched)
    table.add("1 (run twice)", f"{one * 1000:.1f}", "1.00x", f"{repeat:.0f} %", drift(singles, again))
    table.add(
        str(args.batch),
        f"{many * 1000:.1f}",
        f"{one / many:.2f}x",
        f"{found:.0f} %",
        drift(singles, batched),
        checks=[(NOT_SLOWER, one / many), (SAME_BOXES, found)],
    )
    finish(args, table)


def agreement(reference: list, other: list, top: int = 20) -> float:
    """Percentage of each image's ``top`` highest-scoring boxes that ``other`` has too (within 1 px): robust to the
    query order, which random weights make fragile (near-equal scores decide which proposals survive)."""
    found = total = 0
    for a, b in zip(reference, other):
        for box in a.xyxy[np.argsort(-a.scores)[:top]]:
            found += bool((np.abs(b.xyxy - box).max(axis=1) <= 1).any())
            total += 1
    return 100 * found / total


def drift(reference: list, other: list) -> str:
    return f"{max(float(np.abs(a.scores - b.scores).max()) for a, b in zip(reference, other)):.3g}"


if __name__ == "__main__":
    main()
