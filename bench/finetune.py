"""Fine-tuning teaches the toy detector a kind it never saw (issue 30): toy scenes with a purple hexagon (a kind and
a colour absent from its training) beside old shapes, annotated from their ground truth in a real Label Studio, then
``sync.finetune``'s own ``finetune()`` with the committed toy detector as the base. Held-out tasks (40 by default)
measure recall per label before and after with ``sync.quality``'s matching. Goals: the hexagon's recall >= 70 %,
the old kinds' recall (all old labels together) drops by at most 5 points.

Run: ``nice -n 15 env OMP_NUM_THREADS=1 python -m bench.finetune [--train 60] [--held-out 40] [--steps 1500]
[--check]``.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import Goal, Table, add_check_arguments, finish
from pipeline import Options, PipelineSettings
from pipeline.testing import shapes as S
from sync import LabelStudioClient
from sync.finetune import FinetuneJob, finetune
from sync.quality import LabelCounts
from sync.testing import running_label_studio

NEW = "purple hexagon"
OLD = ("red square", "blue circle", "green triangle", "yellow square")
CONFIG = (
    '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
    + "".join(f'<Label value="{label}"/>' for label in (NEW, *OLD))
    + "</RectangleLabels></View>"
)
LEARNS = Goal(f"{NEW} recall after", ">=", 0.7)
KEEPS = Goal("old kinds' recall drop (points)", "<=", 5.0)


def scenes(seed: int, n: int) -> list[tuple[bytes, list[S.Shape]]]:
    """``n`` 160x160 scenes: a purple hexagon in four of five, and one or two old-label shapes in each."""
    rng = np.random.default_rng(seed)
    found = []
    for i in range(n):
        old = [tuple(OLD[k].split()) for k in rng.choice(len(OLD), size=int(rng.integers(1, 3)), replace=False)]
        image, shapes = S.make_scene(rng, shapes=([("purple", "hexagon")] if i % 5 else []) + old)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        found.append((buffer.getvalue(), shapes))
    return found


def _rectangle(shape: S.Shape, size: int = 160) -> dict:
    x0, y0, x1, y1 = (float(v) / size * 100 for v in shape.xyxy)
    value = {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0, "rotation": 0, "rectanglelabels": [shape.name]}
    return {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "value": value}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_check_arguments(parser)
    parser.add_argument("--train", type=int, default=60)
    parser.add_argument("--held-out", type=int, default=40)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=2e-4)
    args = parser.parse_args(argv)
    total = args.train + args.held_out
    data = scenes(300, total)
    started = time.monotonic()
    with running_label_studio(os.environ) as label_studio, tempfile.TemporaryDirectory() as tmp:
        project = label_studio.create_project(CONFIG, title="finetune bench")
        files = {f"scene{i:03d}.png": png for i, (png, _) in enumerate(data)}
        tasks = label_studio.import_local_files(project, files, folder="finetune-bench")
        for task, (_, shapes) in zip(tasks, data):
            result = [_rectangle(s) for s in shapes]
            label_studio.api("POST", f"/api/tasks/{task}/annotations/", json={"result": result})
        settings = PipelineSettings(
            detector=str(S.shapes_detector_dir()), device="cpu", input_size=S.SHAPES_INPUT_SIZE, offline=True
        )
        job = FinetuneJob(project, Path(tmp) / "tuned", args.held_out / total, args.steps, args.lr)
        options = Options(S.SHAPES_BOX_THRESHOLD, S.SHAPES_TEXT_THRESHOLD)

        def progress(step: int, loss: float) -> None:
            if step % 100 == 0 or step == args.steps - 1:
                print(f"step {step} loss {loss:.3f} {(time.monotonic() - started) / 60:.1f} min", flush=True)

        with LabelStudioClient(label_studio.url, label_studio.token) as client:
            report = finetune(client, settings, job, options, on_step=progress)
    minutes = (time.monotonic() - started) / 60
    table = Table(
        "finetune",
        f"Fine-tuning the toy detector on {report.train_images} annotated scenes with a kind it never saw "
        f"({NEW}); recall on {report.held_out} held-out scenes, {report.steps} steps, {minutes:.1f} min",
        ("label", "recall before -> after", "precision before -> after"),
    )
    for label in (NEW, *OLD):
        b, a = report.before.get(label, LabelCounts()), report.after.get(label, LabelCounts())
        checks = [(LEARNS, a.recall or 0.0)] if label == NEW else []
        table.add(
            label, f"{_num(b.recall)} -> {_num(a.recall)}", f"{_num(b.precision)} -> {_num(a.precision)}", checks=checks
        )
    b, a = (
        LabelCounts.summed(counts.get(label, LabelCounts()) for label in OLD)
        for counts in (report.before, report.after)
    )
    drop = 100 * ((b.recall or 0.0) - (a.recall or 0.0))
    table.add(
        "old kinds together",
        f"{_num(b.recall)} -> {_num(a.recall)}",
        f"{_num(b.precision)} -> {_num(a.precision)}",
        checks=[(KEEPS, drop)],
    )
    finish(args, table)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
