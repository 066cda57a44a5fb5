"""Suggestion quality from a real Label Studio's own data (``sync.quality``): 40 toy scenes pre-annotated by the toy
detector through ``sync.prelabel``, annotated from the scenes' ground truth the way a labeler corrects suggestions
(keeps, moves, relabels, drops, adds), and the report's counts checked against the labeler's own tally."""

from __future__ import annotations

import io
from collections import defaultdict

import numpy as np
import pytest

from pipeline import Options
from pipeline.testing import shapes as S
from sync import Outbox
from sync.prelabel import PrelabelJob, prelabel
from sync.quality import main, quality_report
from tests.labelstudio import blob_masks, detections, rectangle_result

LABELS = ("red square", "blue circle", "green triangle")
CONFIG = f"""<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    {"".join(f'<Label value="{label}"/>' for label in LABELS)}
  </RectangleLabels>
</View>"""
BRUSH_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="mask" toName="image"><Label value="cats"/></BrushLabels>
</View>"""
SCENES = 40
STORED_THRESHOLD = 0.2  # the predictions are made at this box threshold; the sweep starts there


def _scenes() -> list[tuple[bytes, list[S.Shape]]]:
    """160x160 scenes of 1-3 of the labels' shapes, a yellow square (no label asks for it) in every fifth."""
    rng = np.random.default_rng(27)
    combos = [tuple(label.split()) for label in LABELS]
    scenes = []
    for i in range(SCENES):
        picked = [combos[k] for k in rng.choice(3, size=int(rng.integers(1, 4)), replace=False)]
        image, shapes = S.make_scene(rng, shapes=picked + ([("yellow", "square")] if i % 5 == 0 else []))
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        scenes.append((buffer.getvalue(), [s for s in shapes if s.name in LABELS]))
    return scenes


def _pixels(region: dict, size: int = 160) -> np.ndarray:
    v = region["value"]
    return np.array([v["x"], v["y"], v["x"] + v["width"], v["y"] + v["height"]]) / 100 * size


def label_like_a_person(index: int, suggestions: list[dict], shapes: list[S.Shape], tally: dict) -> list[dict]:
    """The annotation a labeler submits: for each object, the best suggestion of its label is kept (IoU >= 0.9 with
    the object) or moved onto it, else an overlapping suggestion of another label is relabelled, else the object is
    drawn anew; the suggestions left over are dropped. In every ninth task the labeler also relabels one kept
    suggestion, and in every seventh nudges one by 3 px. ``tally`` counts it all per label."""
    free = list(range(len(suggestions)))
    result = []
    boxes = [_pixels(r) for r in suggestions]
    labels = [r["value"]["rectanglelabels"][0] for r in suggestions]
    for shape in shapes:
        ious = {i: float(S.box_iou(boxes[i], shape.xyxy)[0, 0]) for i in free}
        same = [i for i in free if labels[i] == shape.name and ious[i] >= 0.5]
        other = [i for i in free if ious[i] >= 0.5]
        if same:
            i = max(same, key=ious.get)
            free.remove(i)
            if ious[i] >= 0.9:
                region, label, outcome = dict(suggestions[i]), shape.name, "kept"
                if index % 9 == 0 and not any(t == "relabelled*" for t in tally["edits"]):
                    label, outcome = LABELS[(LABELS.index(shape.name) + 1) % 3], "relabelled"
                    region = rectangle_result(boxes[i], label)
                    tally["edits"].append("relabelled*")
                elif index % 7 == 0:
                    region, outcome = rectangle_result(boxes[i] + [3, 3, 3, 3], label), "moved"
                    tally["edits"].append("nudged")
            else:
                region, label, outcome = rectangle_result(shape.xyxy, shape.name), shape.name, "moved"
            tally[labels[i]][outcome] += 1
            tally[label]["annotated"] += 1
        elif other:
            i = max(other, key=ious.get)
            free.remove(i)
            region, label = rectangle_result(boxes[i], shape.name), shape.name
            tally[labels[i]]["relabelled"] += 1
            tally[label]["annotated"] += 1
        else:
            region = rectangle_result(shape.xyxy, shape.name)
            tally[shape.name]["missed"] += 1
            tally[shape.name]["annotated"] += 1
        result.append(region)
    for i in free:
        tally[labels[i]]["dropped"] += 1
    return result


@pytest.fixture(scope="module")
def toy_pipeline():
    return S.load_shapes_pipeline()


@pytest.fixture
def labeled_project(label_studio, ls_client, toy_pipeline, tmp_path):
    """The project, the labeler's tally and the stored predictions by task."""
    project = label_studio.create_project(CONFIG, title="quality test")
    scenes = _scenes()
    tasks = label_studio.import_local_files(
        project, {f"scene{i:02d}.png": png for i, (png, _) in enumerate(scenes)}, folder=f"quality{project}"
    )
    job = PrelabelJob(project, options=Options(STORED_THRESHOLD))  # the config's labels as the prompt
    progress = prelabel(ls_client, toy_pipeline, job, Outbox(tmp_path / "outbox"))
    assert progress.done == SCENES, progress.summary()
    stored = {p["task"]: p for p in label_studio.api("GET", "/api/predictions", params={"project": project})}
    tally: dict = defaultdict(lambda: defaultdict(int))
    tally["edits"] = []
    for index, (task, (_, shapes)) in enumerate(zip(tasks, scenes)):
        result = label_like_a_person(index, stored[task]["result"], shapes, tally)
        label_studio.api("POST", f"/api/tasks/{task}/annotations/", json={"result": result, "lead_time": 10.0})
    # two tasks labeled without suggestions (imported after the pre-annotation), slower
    (_, shapes), (png, _) = scenes[1], scenes[1]
    for task in label_studio.import_local_files(project, {"late1.png": png, "late2.png": png}, f"quality{project}b"):
        result = [rectangle_result(s.xyxy, s.name) for s in shapes]
        label_studio.api("POST", f"/api/tasks/{task}/annotations/", json={"result": result, "lead_time": 30.0})
    return project, tally, stored


def test_the_report_counts_what_the_labeler_did_and_plots_precision_recall(
    labeled_project, ls_client, label_studio, tmp_path, monkeypatch, capsys
):
    project, tally, stored = labeled_project
    report = quality_report(ls_client, project)
    (version,) = report.versions
    assert version.startswith("groundlabel-") and report.thresholds[version] == STORED_THRESHOLD
    counts = report.sweep(version)[1][0]
    assert "relabelled*" in tally["edits"] and "nudged" in tally["edits"]  # the labeler's own edits happened
    for label in LABELS:
        mine, theirs = tally[label], counts[label]
        suggested = sum(mine[k] for k in ("kept", "moved", "relabelled", "dropped"))
        assert (theirs.kept, theirs.moved, theirs.relabelled, theirs.dropped, theirs.missed, theirs.annotated) == (
            mine["kept"],
            mine["moved"],
            mine["relabelled"],
            mine["dropped"],
            mine["missed"],
            mine["annotated"],
        ), label
        assert theirs.precision == pytest.approx((mine["kept"] + mine["moved"]) / suggested)
        assert theirs.recall == pytest.approx((mine["kept"] + mine["moved"]) / mine["annotated"])
    assert sum(tally[label]["dropped"] + tally[label]["moved"] for label in LABELS) > 0
    assert report.lead_times == {"with": [10.0] * SCENES, "without": [30.0, 30.0]}
    # review order: an ascending sort by the stored prediction score puts the tasks the labeler fixed first
    auc = report.review_auc(version)
    print(f"review order AUC (prediction score vs the annotation differs): {auc:.3f}")
    assert auc >= 0.7

    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    assert main(["--project", str(project), "--out", str(tmp_path / "plots")]) == 0
    printed = capsys.readouterr().out
    assert f"{version}: {SCENES} annotated tasks" in printed and "only >= 0.2" in printed
    assert f"puts them first with AUC {auc:.3f}" in printed
    for label in LABELS:
        assert label in printed
    (plot,) = (tmp_path / "plots").glob("*.png")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_projects_with_nothing_to_compare_get_a_sentence(label_studio, ls_client, tmp_path, monkeypatch, capsys):
    from sync import ProjectConfig, to_label_studio

    def project_with(prediction_version: str | None, annotated: bool, config: str = CONFIG) -> int:
        project = label_studio.create_project(config, title="quality empty")
        (task,) = label_studio.import_tasks(project, [{"image": "/data/upload/none.png"}])
        if prediction_version:
            ls_client.create_prediction(
                task, [rectangle_result([10, 10, 50, 50], LABELS[0])], model_version=prediction_version
            )
        if annotated:
            ls_client.create_annotation(task, [rectangle_result([10, 10, 50, 50], LABELS[0])])
        return project

    nothing = project_with(None, annotated=True)
    assert "holds no predictions" in quality_report(ls_client, nothing).text()
    unlabeled = project_with("groundlabel-toy-box0.3", annotated=False)
    assert "no submitted annotations yet" in quality_report(ls_client, unlabeled).text()
    other = project_with("yolo-v8", annotated=True)
    assert "come from other models (yolo-v8)" in quality_report(ls_client, other).text()
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    assert main(["--project", str(other), "--out", str(tmp_path)]) == 0
    assert "not groundlabel" in capsys.readouterr().out and not list(tmp_path.glob("*.png"))

    # brush only: matched by mask IoU; a mask kept as it was, one redrawn smaller (moved)
    brush = label_studio.create_project(BRUSH_CONFIG, title="quality brush")
    (task,) = label_studio.import_tasks(brush, [{"image": "/data/upload/none.png"}])
    boxes = [[10, 10, 40, 40], [50, 50, 90, 90]]
    masks = blob_masks(100, 100, boxes)
    suggested = to_label_studio(
        detections(100, 100, boxes, ["cats", "cats"], masks=masks), ProjectConfig.parse(BRUSH_CONFIG)
    )
    ls_client.create_prediction(task, suggested.result, model_version="groundlabel-toy+sam-box0.5-text0.25")
    smaller = masks.copy()
    smaller[1, 82:] = False
    annotated = to_label_studio(
        detections(100, 100, boxes, ["cats", "cats"], masks=smaller), ProjectConfig.parse(BRUSH_CONFIG)
    )
    ls_client.create_annotation(task, annotated.result)
    counts = quality_report(ls_client, brush).sweep("groundlabel-toy+sam-box0.5-text0.25")[1][0]["cats"]
    assert (counts.kept, counts.moved, counts.precision) == (1, 1, 1.0)
