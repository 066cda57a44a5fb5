"""Shared by the benchmarks: real-shape random models on disk, timing, and the markdown table whose rows carry
goals (PASS / FAIL, ``--check`` exits 1 on a miss, ``--update-docs`` writes the table into docs/performance.md)."""

from __future__ import annotations

import argparse
import datetime
import math
import operator
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GROUNDLABEL_OFFLINE", "1")

import torch

from pipeline import GroundingPipeline, PipelineSettings
from pipeline.testing.models import save_grounding_dino, save_segmenter

DOCS = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
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


def load_pipeline(
    detector: Path, checkpoints: dict[str, str], device: str | None = None, input_size: int | None = None
) -> GroundingPipeline:
    """The product's pipeline over the benchmark's models, offline (``input_size``: the detector's short side)."""
    return GroundingPipeline.from_settings(
        PipelineSettings(
            detector=str(detector), checkpoints=checkpoints, device=device, input_size=input_size, offline=True
        )
    )


def clear_caches(pipeline: GroundingPipeline) -> None:
    """Forget every model output (detector raw outputs, image embeddings, masks): the next call does the full work."""
    pipeline.detector._raw_cache.clear()
    for name in pipeline.segmenters.loaded:
        segmenter = pipeline.segmenters.get(name)
        segmenter._embeddings.clear()
        segmenter._masks.clear()


def machine() -> str:
    device = f"CUDA {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "CPU only"
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, {device}, torch {torch.__version__} "
        f"with {torch.get_num_threads()} threads"
    )


OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass(frozen=True)
class Goal:
    """What a figure must be for its row to pass: ``Goal("overhead / model time", "<=", 0.10)``. Prefer a ratio of
    two figures taken in one run: the machines are shared, so absolute times drift between runs."""

    figure: str
    op: str
    bound: float
    unit: str = ""

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"goal operator {self.op!r} is not one of {', '.join(OPERATORS)}")

    def met(self, value: float) -> bool:
        """A figure that is not a number (a failed or skipped measurement) never meets its goal."""
        return math.isfinite(value) and OPERATORS[self.op](value, self.bound)

    def __str__(self) -> str:
        return f"{self.figure} {self.op} {self.bound:g}{self.unit}"


@dataclass
class Table:
    """A bench's markdown table whose rows may carry goals: those rows get a goal and a verdict column (PASS, or
    FAIL with the figure that missed). ``name`` is the table's marker in the docs (``<!-- bench:NAME -->``)."""

    name: str
    title: str
    header: tuple[str, ...]
    rows: list[tuple[tuple, tuple[tuple[Goal, float], ...]]] = field(default_factory=list)

    def add(self, *cells, checks: Sequence[tuple[Goal, float]] = ()) -> None:
        """One row; ``checks`` pairs each goal with the measured figure it judges (in the goal's unit)."""
        self.rows.append((cells, tuple(checks)))

    @property
    def missed(self) -> list[str]:
        """One line per goal missed: which row, the goal, the figure."""
        return [
            f"{self.name}: {cells[0]}: {goal} missed ({value:.3g}{goal.unit})"
            for cells, checks in self.rows
            for goal, value in checks
            if not goal.met(value)
        ]

    def markdown(self, command: str = "") -> str:
        judged = any(checks for _, checks in self.rows)
        header = self.header + (("goal", "verdict") if judged else ())
        run = f"`{command}`, {datetime.date.today().isoformat()}, " if command else ""
        load = f", load average {os.getloadavg()[0]:.1f}"  # other work on the machine moves the absolute times
        lines = [f"**{self.title}**", "", f"{run}{machine()}{load}", ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
        for cells, checks in self.rows:
            if judged:
                cells = (*cells, "; ".join(str(goal) for goal, _ in checks), verdict(checks))
            lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
        return "\n".join(lines)


def verdict(checks: Sequence[tuple[Goal, float]]) -> str:
    if not checks:
        return ""
    missed = [f"{goal.figure} {value:.3g}{goal.unit}" for goal, value in checks if not goal.met(value)]
    return "FAIL: " + ", ".join(missed) if missed else "PASS"


def print_table(title: str, header: tuple[str, ...], rows: list[tuple]) -> None:
    """A table without goals, printed."""
    table = Table("", title, header)
    for row in rows:
        table.add(*row)
    print("\n" + table.markdown())


def add_check_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--check`` and ``--update-docs``, which every bench takes; ``finish`` acts on them."""
    parser.add_argument("--check", action="store_true", help="exit 1 when a row misses its goal")
    parser.add_argument(
        "--update-docs",
        nargs="?",
        const=DOCS,
        type=Path,
        metavar="FILE",
        help=f"write the tables between their <!-- bench:NAME --> markers in FILE (default {DOCS.name})",
    )
    return parser


def finish(args: argparse.Namespace, *tables: Table) -> None:
    """Print the tables and every goal missed; write them into the docs with ``--update-docs``; with ``--check``
    exit 1 when a goal was missed."""
    command = command_line()
    for table in tables:
        print("\n" + table.markdown(command))
    if args.update_docs:
        update_docs(args.update_docs, {table.name: table.markdown(command) for table in tables})
    missed = [line for table in tables for line in table.missed]
    judged = sum(len(checks) for table in tables for _, checks in table.rows)
    print(f"\n{judged - len(missed)} of {judged} goals met" + "".join(f"\nFAIL {line}" for line in missed))
    if args.check and missed:
        raise SystemExit(1)


def command_line() -> str:
    """How this bench was run, without the flags that do not change its figures."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    words = [word for word in sys.argv[1:] if word != "--check" and not word.startswith("--update-docs")]
    return " ".join(["python -m", spec.name if spec else Path(sys.argv[0]).stem, *words])


def update_docs(path: Path, blocks: dict[str, str]) -> None:
    """Replace what stands between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` with each block; a name
    without markers in ``path`` is an error (say where its table belongs by adding them)."""
    text = path.read_text()
    for name, block in blocks.items():
        pattern = re.compile(rf"(<!-- bench:{re.escape(name)} -->\n).*?(<!-- /bench:{re.escape(name)} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{path} has no <!-- bench:{name} --> ... <!-- /bench:{name} --> markers for its table")
        text = pattern.sub(lambda match: match.group(1) + block + "\n" + match.group(2), text, count=1)
    path.write_text(text)
    print(f"\nwrote {', '.join(blocks)} into {path}")
