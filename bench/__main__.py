"""Run every benchmark in turn and print their tables: ``python -m bench`` (about 15-25 minutes on 2 CPU cores)."""

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
]

if __name__ == "__main__":
    for script in SCRIPTS:
        subprocess.run([sys.executable, "-m", script], check=True)
