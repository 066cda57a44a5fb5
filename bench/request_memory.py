"""Peak memory of one request with masks at box threshold 0, the worst case a slider allows: the detector keeps all
900 candidate boxes and the segmenter is asked for a mask on each.

Run: ``python -m bench.request_memory [--check]``. Real-shape Grounding DINO and MobileSAM with random weights
(``pipeline.testing``), each image size in a fresh process: the models are loaded and warmed on a small image
(that is "idle"), the peak RSS is reset (``/proc/self/clear_refs``), then one 640x480 or 4000x3000 request runs.
The goal: the peak stays within ``GOAL_MIB`` above idle, whatever the image size. The bound behind it: the larger of
the detector's forward (~1.1 GiB for the real-shape Grounding DINO at its 800x1066 input, the same for any photo)
and the mask stage (at most ``mask_memory``, 512 MiB, of masks per image, plus one decoder chunk of at most
``DECODE_CHUNK_BYTES``, 256 MiB, plus the image): ~1.2 GiB. ``--check`` exits 1 when a size misses the goal.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from bench.common import load_pipeline, print_table, real_models

SIZES = {"640x480": (640, 480), "4000x3000": (4000, 3000)}
GOAL_MIB = 1500  # peak above idle; the bar is "well under 2 GB"
SEGMENTER = "mobile_sam"


def _status_mib(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def measure(width: int, height: int, max_masks: int | None) -> dict:
    """In this process: load, warm up, reset the peak, run one request; MiB idle and at the request's peak."""
    from dataclasses import replace

    import numpy as np

    from pipeline import Options, PipelineSettings

    detector, checkpoints = real_models([SEGMENTER])
    pipeline = load_pipeline(detector, checkpoints)
    env = PipelineSettings.from_env()  # GROUNDLABEL_MAX_MASKS and GROUNDLABEL_MASK_MEMORY_MB, as the app reads them
    pipeline.settings = replace(pipeline.settings, max_masks=env.max_masks, mask_memory=env.mask_memory)
    rng = np.random.default_rng(0)
    pipeline(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "dog", Options(segmenter=SEGMENTER))  # warm-up
    idle = _status_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM (peak RSS) starts again from the current RSS
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    started = time.perf_counter()
    result = pipeline(image, "brown dog. possum on a fence", Options(0.0, 0.0, SEGMENTER, max_masks=max_masks))
    seconds = time.perf_counter() - started
    with_masks = int(sum(bool(mask.any()) for mask in result.masks))
    return {
        "idle": idle,
        "peak": _status_mib("VmHWM"),
        "detections": len(result),
        "masks": with_masks,
        "seconds": seconds,
        "notes": list(result.notes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.request_memory", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when a size misses the goal")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--max-masks", type=int, help="Options.max_masks for the request (default: the setting's)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(*SIZES[args.child], args.max_masks)))
        return 0
    real_models([SEGMENTER])  # built once, outside the measured processes
    rows, failed = [], False
    for size in args.sizes:
        command = [sys.executable, "-m", "bench.request_memory", "--child", size]
        if args.max_masks:
            command += ["--max-masks", str(args.max_masks)]
        child = subprocess.run(command, capture_output=True, text=True, check=True)
        numbers = json.loads(child.stdout.strip().splitlines()[-1])
        above = numbers["peak"] - numbers["idle"]
        verdict = "PASS" if above <= GOAL_MIB else "FAIL"
        failed |= verdict == "FAIL"
        rows.append(
            (
                size,
                numbers["detections"],
                numbers["masks"],
                f"{numbers['idle']:.0f} MiB",
                f"{numbers['peak']:.0f} MiB",
                f"{above:.0f} MiB",
                f"{numbers['seconds']:.1f} s",
                verdict,
            )
        )
        for note in numbers["notes"]:
            print(f"{size}: {note}")
    print_table(
        f"One request with MobileSAM masks at box threshold 0 (goal: peak <= idle + {GOAL_MIB} MiB)",
        ("image", "detections", "with a mask", "idle RSS", "peak RSS", "above idle", "time", "goal"),
        rows,
    )
    print("\nFAIL" if failed else "\nPASS")
    return 1 if failed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
