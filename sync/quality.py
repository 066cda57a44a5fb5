"""How good groundlabel's suggestions are, from the labelers' own decisions in Label Studio:
``python -m sync.quality --project 3 --out quality/``.

For each task holding one of our predictions (``model_version`` starting ``groundlabel-``) and a submitted
annotation, the prediction's objects are matched to the annotation's (``sync.convert.from_label_studio``: masks for
brush and polygon regions, boxes for rectangles; mask IoU where both sides have masks, box IoU otherwise; IoU >= 0.5,
best pairs first). Each suggestion was then *kept* as it was (IoU >= 0.98), *moved* (same label, IoU 0.5-0.98),
*relabelled* (another label on the same object) or *dropped*; objects the labeler added are *missed*. Precision and
recall per label and per model_version follow, and Label Studio's ``lead_time`` of tasks with and without our
suggestions.

The threshold sweep re-counts with the per-region ``score`` each prediction stores, so it runs no model; a
prediction only holds the regions above the threshold it was made at, so the sweep starts there.

``--suggest-thresholds`` calibrates a box threshold per label from the same history (best F1, or the lowest
threshold reaching ``--precision-target``) and prints the precision and recall expected beside today's; only
``--apply`` stores them, as ``box_threshold="t"`` on the labels' ``<Label>`` tags of the project's labeling config,
which the ML backend, ``sync.prelabel`` and the UI read.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import supervision as sv

from pipeline import VERSION_PREFIX, DetectionResult, GroundlabelError

from .client import LabelStudioClient, Task
from .convert import from_label_studio
from .errors import ConfigError
from .settings import BackendSettings

MATCH_IOU = 0.5  # a suggestion and an annotated object are the same object
KEPT_IOU = 0.98  # ... and the labeler left it as it was (Label Studio stores an accepted region unchanged)
OUTCOMES = ("kept", "moved", "relabelled", "dropped", "missed")
ROW_HEADERS = ["model_version", "label", *OUTCOMES, "precision", "recall"]
_THRESHOLD = re.compile(r"-box([0-9]*\.?[0-9]+)")


@dataclass(frozen=True)
class TaskPair:
    """One task's prediction (of one model_version) and its newest submitted annotation, as objects, with the IoU
    of every suggestion against every annotated object."""

    task: int
    model_version: str
    predicted: DetectionResult
    annotated: DetectionResult
    ious: np.ndarray  # (suggestions, annotated objects)
    lead_time: float | None = None
    score: float | None = None  # the prediction's own score (what Label Studio's Data Manager sorts by)

    @property
    def needed_fixing(self) -> bool:
        """The labeler changed something: a suggestion not kept as it was, or an object added."""
        decisions, claimed = decide(self)
        return any(d.outcome != "kept" for d in decisions) or not all(claimed)


@dataclass
class LabelCounts:
    kept: int = 0
    moved: int = 0
    relabelled: int = 0
    dropped: int = 0
    missed: int = 0  # annotated objects no suggestion overlaps
    annotated: int = 0  # annotated objects of this label
    moved_ious: list[float] = field(default_factory=list)

    @property
    def suggested(self) -> int:
        return self.kept + self.moved + self.relabelled + self.dropped

    @property
    def precision(self) -> float | None:
        return (self.kept + self.moved) / self.suggested if self.suggested else None

    @property
    def recall(self) -> float | None:
        return (self.kept + self.moved) / self.annotated if self.annotated else None

    @classmethod
    def summed(cls, counts: Iterable[LabelCounts]) -> LabelCounts:
        """Several labels' counts as one (the micro average over them)."""
        total = cls()
        for c in counts:
            for name in ("kept", "moved", "relabelled", "dropped", "missed", "annotated"):
                setattr(total, name, getattr(total, name) + getattr(c, name))
            total.moved_ious.extend(c.moved_ious)
        return total


@dataclass(frozen=True)
class Decision:
    """What the labeler did with one suggestion: the outcome and, when it matched, the annotated object."""

    outcome: str
    target: int | None = None


def decide(pair: TaskPair, threshold: float = 0.0) -> tuple[list[Decision | None], list[bool]]:
    """Each suggestion's outcome (None: its score is below ``threshold``, as if never suggested) and, per annotated
    object, whether a suggestion matched it. Same-label pairs are matched first, best IoU first, then the rest."""
    shown = pair.predicted.scores >= threshold
    decisions: list[Decision | None] = [None if not s else Decision("dropped") for s in shown]
    claimed = [False] * len(pair.annotated)
    for same_label in (True, False):
        pairs = [
            (pair.ious[i, j], i, j)
            for i in range(len(pair.predicted))
            for j in range(len(pair.annotated))
            if shown[i]
            and pair.ious[i, j] >= MATCH_IOU
            and (pair.predicted.labels[i] == pair.annotated.labels[j]) == same_label
        ]
        for iou, i, j in sorted(pairs, reverse=True):
            if decisions[i].outcome != "dropped" or claimed[j]:
                continue
            claimed[j] = True
            outcome = ("kept" if iou >= KEPT_IOU else "moved") if same_label else "relabelled"
            decisions[i] = Decision(outcome, j)
    return decisions, claimed


def count(pairs: Iterable[TaskPair], threshold: float = 0.0) -> dict[str, LabelCounts]:
    """Per label: the outcomes of the suggestions scored >= ``threshold`` (under the suggested label) and the
    annotated objects (under theirs)."""
    counts: dict[str, LabelCounts] = defaultdict(LabelCounts)
    for pair in pairs:
        decisions, claimed = decide(pair, threshold)
        for i, decision in enumerate(decisions):
            if decision is None:
                continue
            row = counts[pair.predicted.labels[i]]
            setattr(row, decision.outcome, getattr(row, decision.outcome) + 1)
            if decision.outcome == "moved":
                row.moved_ious.append(float(pair.ious[i, decision.target]))
        for j, label in enumerate(pair.annotated.labels):
            counts[label].annotated += 1
            counts[label].missed += not claimed[j]
    return dict(sorted(counts.items()))


@dataclass(frozen=True)
class Suggestion:
    """A calibrated box threshold for one label, with the counts at today's threshold and at the suggested one."""

    label: str
    current: float
    suggested: float
    now: LabelCounts
    then: LabelCounts
    note: str = ""

    def line(self) -> str:
        change = "keep" if self.suggested == self.current else f"{self.current:g} -> {self.suggested:g}"
        return (
            f"  {self.label}: {change}; precision {_num(self.now.precision)} -> {_num(self.then.precision)}, "
            f"recall {_num(self.now.recall)} -> {_num(self.then.recall)}, F1 {_num(f1(self.now))} -> "
            f"{_num(f1(self.then))}" + (f" ({self.note})" if self.note else "")
        )


def f1(counts: LabelCounts) -> float | None:
    p, r = counts.precision, counts.recall
    return None if p is None or r is None else (2 * p * r / (p + r) if p + r else 0.0)


@dataclass
class QualityReport:
    project: int
    pairs: list[TaskPair] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)  # model_version -> the box threshold it was made at
    label_thresholds: dict[str, float] = field(default_factory=dict)  # the config's own per label, today
    lead_times: dict[str, list[float]] = field(default_factory=lambda: {"with": [], "without": []})
    notes: list[str] = field(default_factory=list)  # sentences: why there is nothing to report, what was left out

    @property
    def versions(self) -> list[str]:
        return sorted({pair.model_version for pair in self.pairs})

    def of(self, version: str) -> list[TaskPair]:
        return [pair for pair in self.pairs if pair.model_version == version]

    def sweep(self, version: str, step: float = 0.05) -> tuple[list[float], dict[str, LabelCounts]]:
        """Thresholds from the one ``version`` was made at up to 1, and the counts at each (no model runs)."""
        start = self.thresholds[version]
        grid = [start] + [t for t in np.arange(0, 1.0, step).round(4).tolist() if t > start]
        return grid, [count(self.of(version), t) for t in grid]

    @property
    def calibration_version(self) -> str | None:
        """The model_version calibration learns from: the one with the most annotated tasks (the newest name on a tie)."""
        return max(self.versions, key=lambda v: (len(self.of(v)), v), default=None)

    def suggest_thresholds(self, precision_target: float | None = None, step: float = 0.01) -> list[Suggestion]:
        """Per label of ``calibration_version``'s suggestions: the box threshold with the best F1 (today's when it
        is among the best, else the middle of the widest run of equally good ones: a threshold right at one box's
        score would not hold on the next images) or, with ``precision_target``, the lowest that reaches it
        (the highest precision when none does). Only thresholds at or above the one each label's suggestions were
        made at are tried: the stored scores say nothing below it. Runs no model."""
        version = self.calibration_version
        if version is None:
            return []
        pairs, base = self.of(version), self.thresholds[version]
        grid = [base] + [round(k * step, 4) for k in range(int(1 / step) + 1) if k * step > base + 1e-9]
        counts = [count(pairs, t) for t in grid]
        suggestions = []
        for label in sorted({label for pair in pairs for label in pair.predicted.labels}):
            current = max(base, self.label_thresholds.get(label, base))
            tried = [(t, c.get(label, LabelCounts())) for t, c in zip(grid, counts) if t >= current - 1e-9]
            now, note = tried[0][1], ""
            if precision_target is None:
                t, then = _best_f1(tried)
                note = "already the best F1" if t == tried[0][0] else ""
            else:
                reaching = [(t, c) for t, c in tried if (c.precision or 0.0) >= precision_target]
                if reaching:
                    t, then = reaching[0]
                else:
                    t, then = max(tried, key=lambda tc: tc[1].precision or 0.0)
                    note = f"no threshold reaches precision {precision_target:g}"
            suggestions.append(Suggestion(label, tried[0][0], t, now, then, note))
        return suggestions

    def suggestion_text(self, suggestions: list[Suggestion], precision_target: float | None = None) -> str:
        version = self.calibration_version
        if not suggestions:
            return "No per-label thresholds to suggest: " + (" ".join(self.notes) or "no suggestions were annotated.")
        goal = "best F1" if precision_target is None else f"precision >= {precision_target:g}"
        head = (
            f"Suggested per-label box thresholds ({goal}), from {len(self.of(version))} annotated tasks of {version}:"
        )
        return "\n".join([head, *(s.line() for s in suggestions)])

    def review_auc(self, version: str) -> float | None:
        """How well an ascending sort by prediction score puts the tasks that needed fixing first: the chance that
        one such task scores below one left as suggested (ties count half); None without both kinds."""
        pairs = [p for p in self.of(version) if p.score is not None]
        fixed = [p.score for p in pairs if p.needed_fixing]
        fine = [p.score for p in pairs if not p.needed_fixing]
        if not fixed or not fine:
            return None
        a, b = np.array(fixed)[:, None], np.array(fine)[None, :]
        return float(np.mean((a < b) + 0.5 * (a == b)))

    def review_line(self, version: str) -> str:
        pairs = self.of(version)
        return (
            f"review order: {sum(p.needed_fixing for p in pairs)} of {len(pairs)} tasks needed a fix; sorting by "
            f"prediction score (ascending) puts them first with AUC {_num(self.review_auc(version))}"
        )

    def lead_time_lines(self) -> list[str]:
        return [
            f"Lead time {kind} groundlabel suggestions: median {np.median(times):.1f} s, mean {np.mean(times):.1f} s "
            f"over {len(times)} annotations"
            for kind, times in self.lead_times.items()
            if times
        ]

    def summary(self) -> str:
        """The notes, each version's review-order line and the lead times: what the UI shows above the table."""
        versions = [
            f"{version}: {len(self.of(version))} annotated tasks, {self.review_line(version)}"
            for version in self.versions
        ]
        return "\n".join([*self.notes, *versions, *self.lead_time_lines()])

    def text(self) -> str:
        lines = [f"Suggestion quality in project {self.project}", *self.notes]
        for version in self.versions:
            pairs = self.of(version)
            lines += ["", f"{version}: {len(pairs)} annotated tasks (box threshold {self.thresholds[version]:g})"]
            lines += table(count(pairs))
            lines.append("  " + self.review_line(version))
            grid, sweep = self.sweep(version)
            lines += [
                "",
                f"  precision / recall against the box threshold (from the stored scores: only >= "
                f"{grid[0]:g}, the threshold these predictions were made at)",
            ]
            labels = sorted({label for counts in sweep for label in counts})
            lines.append("  " + "threshold".ljust(10) + "".join(label[:16].rjust(18) for label in labels))
            for t, counts in zip(grid, sweep):
                cells = [_pr(counts.get(label, LabelCounts())) for label in labels]
                lines.append("  " + f"{t:g}".ljust(10) + "".join(cell.rjust(18) for cell in cells))
        return "\n".join(lines + self.lead_time_lines())

    def rows(self) -> list[list]:
        """One row per model_version and label (``ROW_HEADERS``), for a table in the UI."""
        rows = []
        for version in self.versions:
            for label, c in count(self.of(version)).items():
                rows.append(
                    [
                        version,
                        label,
                        c.kept,
                        c.moved,
                        c.relabelled,
                        c.dropped,
                        c.missed,
                        _num(c.precision),
                        _num(c.recall),
                    ]
                )
        return rows

    def write_plots(self, out: Path) -> list[Path]:
        """One PNG per model_version: precision and recall against the box threshold, a line per label."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        out.mkdir(parents=True, exist_ok=True)
        written = []
        for n, version in enumerate(self.versions, 1):
            grid, sweep = self.sweep(version)
            labels = sorted({label for counts in sweep for label in counts})
            figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
            for label in labels:
                rows = [counts.get(label, LabelCounts()) for counts in sweep]
                left.plot(grid, [np.nan if r.precision is None else r.precision for r in rows], marker=".", label=label)
                right.plot(grid, [np.nan if r.recall is None else r.recall for r in rows], marker=".", label=label)
            for axis, name in ((left, "precision"), (right, "recall")):
                axis.set(xlabel="box threshold", ylabel=name, ylim=(0, 1.05), title=name)
                axis.grid(alpha=0.3)
            right.legend(fontsize="small")
            figure.suptitle(f"{version} (from stored scores, >= {grid[0]:g})", fontsize="small")
            figure.tight_layout()
            path = out / f"precision_recall_{n}.png"
            figure.savefig(path, dpi=100)
            plt.close(figure)
            written.append(path)
        return written


def quality_report(client: LabelStudioClient, project: int) -> QualityReport:
    """Read every task of ``project`` with an annotation and match our predictions to it. A project with nothing
    to match gives a report whose ``notes`` say why."""
    report = QualityReport(project)
    annotated = predicted = 0
    others: set[str] = set()
    for task in client.iter_tasks(project):
        ours = {v for v in task.model_versions if v.startswith(VERSION_PREFIX)}
        others |= set(task.model_versions) - ours
        predicted += bool(task.prediction_count)
        annotation = submitted_annotation(client, task)
        if annotation is None:
            continue
        annotated += 1
        lead_time = annotation.get("lead_time")
        if lead_time is not None and (ours or not task.prediction_count):
            report.lead_times["with" if ours else "without"].append(float(lead_time))
        if not ours:
            continue
        newest: dict[str, dict] = {}
        for prediction in client.predictions(task.id):
            version = str(prediction.get("model_version") or "")
            if version in ours and (prediction.get("created_at") or "") >= (
                newest.get(version, {}).get("created_at") or ""
            ):
                newest[version] = prediction
        for version, prediction in newest.items():
            found = pair(task.id, version, prediction["result"], annotation["result"], lead_time)
            report.pairs.append(replace(found, score=prediction.get("score")))
    for version in report.versions:
        report.thresholds[version] = stored_threshold(version, report.of(version))
    try:
        report.label_thresholds = client.project(project).config().label_thresholds
    except ConfigError:  # a config groundlabel cannot fill: no per-label thresholds of its own
        pass
    report.notes += _why_empty(report, project, annotated, predicted, others)
    return report


def submitted_annotation(client: LabelStudioClient, task: Task) -> dict | None:
    """A task's newest submitted (not cancelled) annotation, or None: what the labeler last said about it."""
    if not task.is_labeled:
        return None
    done = [a for a in client.annotations(task.id) if not a.get("was_cancelled")]
    return max(done, key=lambda a: a.get("updated_at") or a.get("created_at") or "") if done else None


def pair(task: int, version: str, prediction: list[dict], annotation: list[dict], lead_time=None) -> TaskPair:
    """Match one prediction's regions to one annotation's (the image size from their ``original_width/height``)."""
    sized = next((r for r in [*prediction, *annotation] if r.get("original_width")), None)
    width, height = (sized["original_width"], sized["original_height"]) if sized else (1, 1)
    predicted, annotated = (from_label_studio(r, width, height, version) for r in (prediction, annotation))
    return matched(task, version, predicted, annotated, lead_time)


def matched(
    task: int, version: str, predicted: DetectionResult, annotated: DetectionResult, lead_time=None
) -> TaskPair:
    """One task's suggestions and annotated objects (pixels, same image) with the IoU of every pair: mask IoU where
    both sides have masks, box IoU otherwise."""
    if predicted.masks is not None and annotated.masks is not None:
        a = predicted.masks.reshape(len(predicted), -1).astype(np.float32)
        b = annotated.masks.reshape(len(annotated), -1).astype(np.float32)
        inter = a @ b.T
        ious = inter / np.maximum(a.sum(1)[:, None] + b.sum(1)[None, :] - inter, 1)
    else:
        ious = sv.box_iou_batch(predicted.xyxy, annotated.xyxy) if len(predicted) and len(annotated) else None
    ious = np.zeros((len(predicted), len(annotated))) if ious is None else ious
    return TaskPair(task, version, predicted, annotated, np.asarray(ious, np.float64), lead_time)


def stored_threshold(version: str, pairs: list[TaskPair]) -> float:
    """The box threshold a model_version names (``-box0.3``), else the lowest score its predictions hold."""
    found = _THRESHOLD.search(version)
    if found:
        return float(found.group(1))
    scores = [float(s) for p in pairs for s in p.predicted.scores]
    return round(min(scores), 4) if scores else 0.0


def _best_f1(tried: list[tuple[float, LabelCounts]]) -> tuple[float, LabelCounts]:
    """The first of ``tried`` (today's threshold) when its F1 is the best, else the middle of the widest run of
    neighbouring thresholds that share the best F1."""
    scores = [f1(c) or 0.0 for _, c in tried]
    best = max(scores)
    if scores[0] >= best - 1e-9:
        return tried[0]
    runs, start = [], None
    for i, score in enumerate([*scores, -1.0]):
        if score >= best - 1e-9 and start is None:
            start = i
        elif score < best - 1e-9 and start is not None:
            runs.append((i - start, start, i - 1))
            start = None
    _, first, last = max(runs, key=lambda run: (run[0], -run[1]))
    return tried[(first + last) // 2]


def apply_thresholds(client: LabelStudioClient, project: int, suggestions: list[Suggestion]) -> dict[str, float]:
    """Store the suggested thresholds in the project's labeling config (``<Label box_threshold=...>``): the ML
    backend's next /setup names a new model_version, so Label Studio predicts again with them. Returns them."""
    chosen = {s.label: s.suggested for s in suggestions}
    config = client.project(project).config()
    client.set_label_config(project, config.xml_with_label_thresholds(chosen))
    return chosen


def _why_empty(report: QualityReport, project: int, annotated: int, predicted: int, others: set[str]) -> list[str]:
    if report.pairs:
        return []
    if not predicted:
        return [
            f"Project {project} holds no predictions: pre-annotate it (python -m sync.prelabel --project "
            f"{project}, or the UI's Pre-annotate button), have some tasks labeled, then run this again."
        ]
    if not annotated:
        return [
            f"Project {project} has no submitted annotations yet: there is nothing to compare the suggestions "
            "with until labelers submit some tasks."
        ]
    if others and not any(v.startswith(VERSION_PREFIX) for v in others):
        named = ", ".join(sorted(others)[:3])
        return [
            f"The predictions in project {project} come from other models ({named}), not groundlabel: "
            "this report measures groundlabel's own suggestions."
        ]
    return [f"No task of project {project} holds both a groundlabel prediction and a submitted annotation yet."]


def table(counts: dict[str, LabelCounts]) -> list[str]:
    head = ["label", *OUTCOMES, "moved IoU", "precision", "recall"]
    rows = [
        [
            label,
            c.kept,
            c.moved,
            c.relabelled,
            c.dropped,
            c.missed,
            _num(np.mean(c.moved_ious) if c.moved_ious else None),
            _num(c.precision),
            _num(c.recall),
        ]
        for label, c in counts.items()
    ]
    width = max([len(head[0]), *(len(r[0]) for r in rows)]) + 2
    return ["  " + head[0].ljust(width) + "".join(h.rjust(11) for h in head[1:])] + [
        "  " + str(r[0]).ljust(width) + "".join(str(v).rjust(11) for v in r[1:]) for r in rows
    ]


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pr(counts: LabelCounts) -> str:
    return f"{_num(counts.precision)} / {_num(counts.recall)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sync.quality", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--project", type=int, required=True)
    parser.add_argument("--out", type=Path, help="directory for the precision/recall plots (PNG)")
    parser.add_argument("--url", help="Label Studio URL (default: $LABEL_STUDIO_URL)")
    parser.add_argument(
        "--suggest-thresholds", action="store_true", help="calibrate a box threshold per label (best F1 by default)"
    )
    parser.add_argument("--precision-target", type=float, metavar="P", help="... the lowest reaching precision P")
    parser.add_argument(
        "--apply", action="store_true", help="store the suggested thresholds in the project's labeling config"
    )
    args = parser.parse_args(argv)
    if (args.apply or args.precision_target is not None) and not args.suggest_thresholds:
        parser.error("--apply and --precision-target go with --suggest-thresholds")
    try:
        settings = BackendSettings.from_env()
        settings.configure_logging()
        with LabelStudioClient.from_settings(settings, args.url) as client:
            report = quality_report(client, args.project)
            if args.suggest_thresholds:
                suggestions = report.suggest_thresholds(args.precision_target)
                print(report.suggestion_text(suggestions, args.precision_target))
                if args.apply and suggestions:
                    chosen = apply_thresholds(client, args.project, suggestions)
                    pairs = ", ".join(f"{label}={t:g}" for label, t in chosen.items())
                    print(f"Applied to project {args.project}'s labeling config: {pairs}")
                elif suggestions:
                    print("Nothing was changed: add --apply to store them in the project's labeling config.")
                return 0
    except GroundlabelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.text())
    if args.out and report.pairs:
        for path in report.write_plots(args.out):
            print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
