"""Peak memory (RSS) per mode: boxes only, + MobileSAM, + SAM vit_b. Each mode runs in a fresh process.

Goal: a CPU machine of 8 GB runs each mode with room for the rest (peak RSS at most 4 GiB with boxes or MobileSAM,
6 GiB with SAM vit_b). RSS does not drift with the machine's load, so the bounds are absolute.
Run: ``python -m bench.memory [--check] [--update-docs]``. Real-shape models with random weights; one 640x480 image.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

from bench.common import Goal, Table, add_check_arguments, finish, load_pipeline, real_models

MODES = {"boxes only": None, "boxes + MobileSAM": "mobile_sam", "boxes + SAM vit_b": "sam_vit_b"}
PEAK = {None: Goal("peak", "<=", 4096, " MiB"), "mobile_sam": Goal("peak", "<=", 4096, " MiB")}
PEAK["sam_vit_b"] = Goal("peak", "<=", 6144, " MiB")


def measure(segmenter: str | None) -> dict:
    """In this process: load, run once, report peak RSS (MiB) after loading and after inference."""
    import numpy as np

    from pipeline import Options

    detector, checkpoints = real_models([segmenter] if segmenter else [])
    pipeline = load_pipeline(detector, checkpoints)
    if segmenter:
        pipeline.segmenters.get(segmenter)
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    result = pipeline(image, "brown dog. possum on a fence", Options(0.3, segmenter=segmenter))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"loaded": loaded, "peak": peak, "detections": len(result)}


def main(argv: list[str] | None = None) -> None:
    parser = add_check_arguments(argparse.ArgumentParser(description=__doc__))
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the measured process's mode
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(None if args.child == "none" else args.child)))
        return
    real_models([name for name in MODES.values() if name])  # build once, outside the measured processes
    table = Table(
        "memory", "Peak memory (RSS) per mode, 640x480 image", ("mode", "after loading", "peak after one image")
    )
    for mode, segmenter in MODES.items():
        child = subprocess.run(
            [sys.executable, "-m", "bench.memory", "--child", segmenter or "none"],
            capture_output=True,
            text=True,
            check=True,
        )
        numbers = json.loads(child.stdout.strip().splitlines()[-1])
        table.add(
            mode,
            f"{numbers['loaded']:.0f} MiB",
            f"{numbers['peak']:.0f} MiB",
            checks=[(PEAK[segmenter], numbers["peak"])],
        )
    finish(args, table)


if __name__ == "__main__":
    main()
