"""The registry's models on this machine: parameters, CPU time per image and peak memory, each model of its real
shape with random weights (the compute is real, the outputs are not), one model per process so memory figures do
not mix. Prints a markdown table.

Run: ``python -m bench.models [--models grounding-dino-tiny,mobile_sam,...]`` (about 1-3 minutes per model on 2 cores;
sam_vit_l / sam_vit_h take longer).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import MODELS_DIR, print_table, real_models
from pipeline import DETECTORS, SEGMENTERS, Exemplar, MaskPrompt, load_image, parse_prompt
from pipeline.registry import FAMILIES, resolve_detector

# the first registered detector of each family, then the segmenters worth comparing
DEFAULT = ",".join(
    [next(name for name, spec in DETECTORS.items() if spec.family == family) for family in FAMILIES]
    + ["mobile_sam", "sam_vit_b", "sam2_1_hiera_tiny", "sam_hq_vit_b"]
)
BOXES = 5


def measure(name: str) -> dict:
    """Run in a fresh process: load ``name`` (real shape, random weights), time one 640x480 image."""
    from pipeline.families import load_detector
    from pipeline.segmenter import SegmenterPool
    from pipeline.testing.models import save_sam2, save_sam_hq

    image = load_image(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
    before = _rss_mb()
    if name in DETECTORS:
        detector = load_detector(resolve_detector(name, {name: str(_real_detector(name))}), device="cpu", offline=True)
        params = sum(p.numel() for p in detector.model.parameters())
        detector.raw([load_image(np.zeros((48, 64, 3), dtype=np.uint8))], parse_prompt("warm up"))
        started = time.perf_counter()
        detector.raw([image], parse_prompt("brown dog. possum on a fence"))
        first = time.perf_counter() - started
        if not DETECTORS[name].reads_exemplars:
            return {"params": params, "image": first, "prompt": None, "peak_mb": _rss_mb() - before}
        # OWLv2, SAM 3: a new prompt (a phrase and an example box) on the same image reuses its vision features
        started = time.perf_counter()
        detector.raw([image], parse_prompt("cat", [Exemplar((200, 150, 360, 330), "cat")]))
        return {
            "params": params,
            "image": first,
            "prompt": time.perf_counter() - started,
            "peak_mb": _rss_mb() - before,
        }
    if SEGMENTERS[name].hub:
        directory = MODELS_DIR / f"{name}-real"
        if not (directory / "config.json").exists():
            (save_sam2 if SEGMENTERS[name].model_type == "sam2" else save_sam_hq)(directory, "real")
        checkpoints = {name: str(directory)}
    else:
        checkpoints = real_models([name])[1]
    segmenter = SegmenterPool(device="cpu", checkpoints=checkpoints, offline=True).get(name)
    params = sum(p.numel() for p in segmenter._model().parameters())
    boxes = [MaskPrompt.from_box([40 + 100 * i, 60, 140 + 100 * i, 300]) for i in range(BOXES)]
    started = time.perf_counter()
    segmenter.decode(image, boxes)  # encoder + decoder
    first = time.perf_counter() - started
    started = time.perf_counter()
    segmenter.decode(image, [MaskPrompt(points=((320.0, 240.0),), positive=(True,))])  # a click: decoder only
    click = time.perf_counter() - started
    return {"params": params, "image": first, "prompt": click, "peak_mb": _rss_mb() - before}


def _real_detector(name: str) -> Path:
    """A random copy of detector ``name``'s real architecture, saved once under ``MODELS_DIR``."""
    spec = DETECTORS[name]
    directory = MODELS_DIR / f"{spec.family}-real"
    if not (directory / "config.json").exists():
        spec.family_entry.save_random(directory, "real")
    return directory


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process's model
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    rows = []
    for name in args.models.split(","):
        threads = ["--threads", str(args.threads)] if args.threads else []
        done = subprocess.run(
            [sys.executable, "-m", "bench.models", "--one", name, *threads], capture_output=True, text=True
        )
        if done.returncode:
            rows.append((name, "failed: " + done.stderr.strip().splitlines()[-1], "", "", "", ""))
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        spec = DETECTORS.get(name) or SEGMENTERS[name]
        rows.append(
            (
                name,
                f"{result['params'] / 1e6:.1f} M",
                spec.licence,
                f"{result['image']:.2f} s" + (f" ({BOXES} boxes)" if name in SEGMENTERS else ""),
                "-" if result["prompt"] is None else f"{result['prompt'] * 1000:.0f} ms",
                f"{result['peak_mb']:.0f} MB",
            )
        )
    print_table(
        f"Registered models, real shapes with random weights, one 640x480 image, CPU ({torch.get_num_threads()}"
        " threads)",
        (
            "model",
            "parameters",
            "licence",
            "first image (encoder + decoder / forward)",
            "a click on it (decoder only; OWLv2, SAM 3: a phrase and an example box, features cached)",
            "peak RSS added",
        ),
        rows,
    )


if __name__ == "__main__":
    main()
