"""Shared by the benchmarks: real-shape random models on disk, timing, and the markdown table."""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GROUNDLABEL_OFFLINE", "1")

import torch

from pipeline import GroundingPipeline, PipelineSettings
from pipeline.testing.models import save_grounding_dino, save_segmenter

MODELS_DIR = Path(os.environ.get("GROUNDLABEL_BENCH_MODELS", Path(tempfile.gettempdir()) / "groundlabel-bench-models"))


def timed(function, repeats: int = 1) -> float:
    """Median wall time in seconds over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def real_models(segmenters: list[str] = (), shape: str = "real") -> tuple[Path, dict[str, str]]:
    """(Grounding DINO dir, {segmenter: checkpoint}) with random weights of the real shapes, built once."""
    detector = MODELS_DIR / f"gdino-{shape}"
    if not (detector / "config.json").exists():
        save_grounding_dino(detector, shape)
    checkpoints = {}
    for name in segmenters:
        path = MODELS_DIR / f"{name}.pth"
        if not path.exists():
            save_segmenter(path, name)
        checkpoints[name] = str(path)
    return detector, checkpoints


def load_pipeline(detector: Path, checkpoints: dict[str, str], device: str | None = None) -> GroundingPipeline:
    """The product's pipeline over the benchmark's models, offline."""
    return GroundingPipeline.from_settings(
        PipelineSettings(detector=str(detector), checkpoints=checkpoints, device=device, offline=True)
    )


def machine() -> str:
    device = f"CUDA {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "CPU only"
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, {device}, torch {torch.__version__} "
        f"with {torch.get_num_threads()} threads"
    )


def print_table(title: str, header: tuple[str, ...], rows: list[tuple]) -> None:
    print(f"\n### {title}\n\nMachine: {machine()}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
