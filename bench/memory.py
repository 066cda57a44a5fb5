"""Peak memory (RSS) per mode: boxes only, + MobileSAM, + SAM vit_b. Each mode runs in a fresh process.

Run: ``python -m bench.memory``. Real-shape models with random weights; one 640x480 image, one prompt.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

from bench.common import load_pipeline, print_table, real_models

MODES = {"boxes only": None, "boxes + MobileSAM": "mobile_sam", "boxes + SAM vit_b": "sam_vit_b"}


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


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(measure(None if sys.argv[2] == "none" else sys.argv[2])))
        return
    real_models([name for name in MODES.values() if name])  # build once, outside the measured processes
    rows = []
    for mode, segmenter in MODES.items():
        child = subprocess.run(
            [sys.executable, "-m", "bench.memory", "--child", segmenter or "none"],
            capture_output=True,
            text=True,
            check=True,
        )
        numbers = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append((mode, f"{numbers['loaded']:.0f} MiB", f"{numbers['peak']:.0f} MiB"))
    print_table("Peak memory (RSS) per mode, 640x480 image", ("mode", "after loading", "peak after one image"), rows)


if __name__ == "__main__":
    main()
