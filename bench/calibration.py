"""Per-label box thresholds calibrated from labelers' decisions (issue 27): the toy detector pre-annotates 40 scenes
at a low box threshold, their ground truth plays the labelers' annotations, and ``sync.quality`` suggests each
label's threshold (best F1) from those stored scores, the way ``python -m sync.quality --suggest-thresholds`` does.
Then 40 held-out scenes are labeled at the default box threshold and with the calibrated ones (the same cached raw
outputs re-filtered: one detector run per scene) and scored the same way. Goal: calibrated F1 >= default F1 over
all labels (equal when the default is already best for every label).

Run: ``python -m bench.calibration [--scenes 40] [--check]`` (about half a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import io

import numpy as np

from bench.common import Goal, Table, add_check_arguments, finish
from pipeline import DetectionResult, Options
from pipeline.testing import shapes as S
from sync import ProjectConfig, to_label_studio
from sync.quality import LabelCounts, QualityReport, count, f1, pair

LABELS = ("red square", "blue circle", "green triangle", "yellow square", "red circle", "blue triangle")
CONFIG = ProjectConfig.parse(
    '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
    + "".join(f'<Label value="{label}"/>' for label in LABELS)
    + "</RectangleLabels></View>"
)
FLOOR = 0.05  # the box threshold the calibration scenes are pre-annotated at: the stored scores start here
DEFAULT = S.SHAPES_BOX_THRESHOLD
NO_WORSE = Goal("calibrated F1 - default F1", ">=", 0.0)


def scenes(seed: int, n: int) -> list[tuple[bytes, list[S.Shape]]]:
    """``n`` 160x160 scenes of 1-4 random shapes (any colour and kind, so some belong to no label)."""
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(n):
        image, shapes = S.make_scene(rng)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        found.append((buffer.getvalue(), [s for s in shapes if s.name in LABELS]))
    return found


def history(pipeline, data, options: Options) -> QualityReport:
    """The scenes' suggestions under ``options`` matched to their ground truth, as ``sync.quality`` matches them."""
    version = pipeline.model_version(options)
    report = QualityReport(0, thresholds={version: options.box_threshold})
    prompt = ". ".join(LABELS)
    for n, (png, shapes) in enumerate(data):
        result = pipeline(png, prompt, options, CONFIG.label_map())
        names = [s.name for s in shapes]
        truth = DetectionResult(
            result.width, result.height, [s.xyxy for s in shapes], [1.0] * len(shapes), names, names, names
        )
        predicted = to_label_studio(result, CONFIG).result
        report.pairs.append(pair(n, version, predicted, to_label_studio(truth, CONFIG).result))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_check_arguments(parser)
    parser.add_argument("--scenes", type=int, default=40)
    args = parser.parse_args(argv)
    pipeline = S.load_shapes_pipeline()
    suggestions = history(pipeline, scenes(270, args.scenes), Options(FLOOR)).suggest_thresholds()
    calibrated = {s.label: s.suggested for s in suggestions}
    held_out = scenes(271, args.scenes)
    before = count(history(pipeline, held_out, Options(DEFAULT)).pairs)
    after = count(history(pipeline, held_out, Options(DEFAULT, label_thresholds=calibrated)).pairs)
    table = Table(
        "calibration",
        f"Per-label box thresholds calibrated on {args.scenes} toy scenes (suggestions stored at {FLOOR:g}), "
        f"F1 on {args.scenes} held-out scenes",
        ("label", "threshold: default / calibrated", "precision", "recall", "F1: default -> calibrated"),
    )
    for label in LABELS:
        b, a = before.get(label, LabelCounts()), after.get(label, LabelCounts())
        table.add(
            label,
            f"{DEFAULT:g} / {calibrated.get(label, DEFAULT):g}",
            f"{_num(b.precision)} -> {_num(a.precision)}",
            f"{_num(b.recall)} -> {_num(a.recall)}",
            f"{_num(f1(b))} -> {_num(f1(a))}",
        )
    b, a = LabelCounts.summed(before.values()), LabelCounts.summed(after.values())
    same = all(abs(calibrated.get(label, DEFAULT) - DEFAULT) < 1e-9 for label in LABELS)
    table.add(
        "all labels" + (" (the default is already best)" if same else ""),
        "",
        f"{_num(b.precision)} -> {_num(a.precision)}",
        f"{_num(b.recall)} -> {_num(a.recall)}",
        f"{_num(f1(b))} -> {_num(f1(a))}",
        checks=[(NO_WORSE, (f1(a) or 0.0) - (f1(b) or 0.0))],
    )
    finish(args, table)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
