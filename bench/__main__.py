"""Run every benchmark in turn and print their tables: ``python -m bench [--check] [--update-docs]`` (about 15-25
minutes on 2 CPU cores). The flags go to each bench; with ``--check`` the exit status is 1 when any bench missed a
goal (every bench still runs)."""

import subprocess
import sys

SCRIPTS = [
    "bench.pipeline_speed",
    "bench.mask_stage",
    "bench.detector_batch",
    "bench.server_overhead",
    "bench.prelabel_throughput",
    "bench.memory",
    "bench.smart_click",
    "bench.calibration",
    "bench.finetune",
    "bench.video_tracking",
]

if __name__ == "__main__":
    flags = sys.argv[1:]
    failed = [script for script in SCRIPTS if subprocess.run([sys.executable, "-m", script, *flags]).returncode]
    if failed:
        print(f"\nmissed a goal or failed: {', '.join(failed)}")
        sys.exit(1)
