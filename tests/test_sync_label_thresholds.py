"""Per-label box thresholds on the Label Studio side: read from the config's ``<Label box_threshold=...>`` by the ML
backend and ``sync.prelabel`` (one model_version in /setup and in predictions), calibrated by ``sync.quality`` from
what the labelers kept, and stored in the config only when asked."""

from __future__ import annotations

import httpx
import pytest

from pipeline import LazyPipeline, Options
from sync import BackendSettings, Outbox, ProjectConfig, to_label_studio
from sync.backend import options_for
from sync.errors import ConfigError
from sync.prelabel import PrelabelJob, prelabel
from sync.quality import QualityReport, main, pair
from tests.labelstudio import BOX, TEXT, backend_app, detections, png, serve
from tests.test_sync_backend import retrieve_predictions

BOXES_ONLY = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="cats"{cats}/>
    <Label value="house"/>
  </RectangleLabels>
</View>"""
VERSION = "groundlabel-x-box0.3"


def _config(cats: str = "") -> str:
    return BOXES_ONLY.format(cats=f' box_threshold="{cats}"' if cats else "")


def test_the_config_gives_a_label_its_own_threshold_and_a_wrong_one_is_a_sentence():
    config = ProjectConfig.parse(_config("0.6"))
    assert config.label_thresholds == {"cats": 0.6}
    assert options_for(config, None, BackendSettings(box_threshold=0.3)).label_thresholds == (("cats", 0.6),)
    assert config.with_label_thresholds(Options(label_thresholds="cats=0.2")).label_thresholds == (("cats", 0.2),)
    assert config.digest == ProjectConfig.parse(_config()).digest  # the version's -lt part names it, not -c
    with pytest.raises(ConfigError, match=r"<Label value='cats'> in 'label': The box threshold of label 'cats' must"):
        ProjectConfig.parse(_config("lots"))
    stored = ProjectConfig.parse(ProjectConfig.parse(_config()).xml_with_label_thresholds({"house": 0.45}))
    assert stored.label_thresholds == {"house": 0.45} and stored.labels == ["cats", "house"]


def _history(*tasks) -> QualityReport:
    """A report over hand-made tasks: each (suggested [(box, label, score)], annotated [(box, label)])."""
    config = ProjectConfig.parse(_config())
    report = QualityReport(1, thresholds={VERSION: 0.3})
    for n, (suggested, annotated) in enumerate(tasks):
        boxes, labels, scores = zip(*suggested)
        predicted = to_label_studio(detections(100, 100, boxes, labels, scores=list(scores)), config).result
        truth = to_label_studio(detections(100, 100, [b for b, _ in annotated], [x for _, x in annotated]), config)
        report.pairs.append(pair(n, VERSION, predicted, truth.result))
    return report


A, B, C = [5, 5, 30, 30], [40, 40, 70, 70], [5, 40, 30, 70]
# cats: kept at 0.9 and 0.85, dropped at 0.35 and 0.4; house: kept at 0.8 and 0.45, dropped at 0.5
HISTORY = (
    ([(A, "cats", 0.9), (B, "cats", 0.35), (C, "house", 0.8)], [(A, "cats"), (C, "house")]),
    ([(A, "cats", 0.85), (B, "cats", 0.4), (C, "house", 0.45)], [(A, "cats"), (C, "house")]),
    ([(B, "house", 0.5)], []),
)


def test_calibration_picks_each_labels_best_f1_threshold_from_the_stored_scores():
    cats, house = _history(*HISTORY).suggest_thresholds()
    # cats: every threshold above the 0.4 drop up to the 0.85 keep has F1 1: the middle of that run, not its edge
    assert (cats.label, cats.current, cats.suggested) == ("cats", 0.3, 0.63)
    assert (cats.now.precision, cats.now.recall, cats.then.precision, cats.then.recall) == (0.5, 1.0, 1.0, 1.0)
    # house: at 0.3 P 2/3 R 1 (F1 0.8); above 0.45 P 1/2 R 1/2; above 0.5 P 1 R 1/2 (0.67): today's stays
    assert (house.suggested, house.note) == (0.3, "already the best F1")
    assert "cats: 0.3 -> 0.63; precision 0.500 -> 1.000, recall 1.000 -> 1.000" in cats.line()


def test_a_precision_target_takes_the_lowest_threshold_reaching_it_or_says_none_does():
    cats, house = _history(*HISTORY).suggest_thresholds(precision_target=0.7)
    assert cats.suggested == 0.41 and (house.suggested, house.then.precision, house.then.recall) == (0.51, 1.0, 0.5)
    (unreachable,) = [s for s in _history(HISTORY[2]).suggest_thresholds(precision_target=0.9)]
    assert unreachable.note == "no threshold reaches precision 0.9" and unreachable.suggested == 0.3


def test_calibration_starts_at_the_labels_own_threshold_and_an_empty_history_says_why():
    report = _history(*HISTORY)
    report.label_thresholds = {"cats": 0.5}  # set in the config: scores below it say nothing about today
    cats = report.suggest_thresholds()[0]
    assert (cats.current, cats.suggested, cats.note) == (0.5, 0.5, "already the best F1")
    empty = QualityReport(7, notes=["Project 7 holds no predictions: pre-annotate it."])
    assert empty.suggest_thresholds() == []
    assert (
        empty.suggestion_text([])
        == "No per-label thresholds to suggest: Project 7 holds no predictions: pre-annotate it."
    )


CATS = 0.9998  # between the tiny model's scores for cats on png(50, 50, seed=5), all above BOX


def test_the_backend_and_prelabel_apply_the_configs_label_threshold_under_one_announced_version(
    label_studio, ls_client, pipeline, tmp_path
):
    xml = _config(f"{CATS:g}")
    config = ProjectConfig.parse(xml)
    image = png(50, 50, seed=5)
    every = pipeline(image, config.default_prompt, Options(BOX, TEXT), config.label_map())
    cats = [float(s) for s, label in zip(every.scores, every.labels) if label == "cats"]
    assert min(cats) <= CATS < max(cats), "the tiny model's cats scores moved: pick CATS between them"
    wanted = pipeline(
        image, config.default_prompt, Options(BOX, TEXT, label_thresholds={"cats": CATS}), config.label_map()
    )
    project = label_studio.create_project(label_config=xml)
    settings = BackendSettings(box_threshold=BOX, text_threshold=TEXT, segmenter=None, state_dir=tmp_path / "state")
    first, second = label_studio.upload_images(project, {"a.png": image, "b.png": image})

    with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url:
        label_studio.register_ml_backend(project, url)
        (prediction,) = retrieve_predictions(label_studio, project, [first])[first]
        announced = httpx.post(f"{url}/setup", timeout=10, json={"project": f"{project}.1", "schema": xml}).json()
    scores = [r["score"] for r in prediction["result"] if r["value"]["rectanglelabels"] == ["cats"]]
    assert scores and all(s > CATS for s in scores) and len(scores) < len(cats)
    assert prediction["result"] == to_label_studio(wanted, config).result
    assert announced["model_version"] == prediction["model_version"] and "-lt" in prediction["model_version"]

    progress = prelabel(ls_client, pipeline, PrelabelJob(project, options=Options(BOX, TEXT)), Outbox(tmp_path / "o"))
    assert (progress.done, progress.skipped) == (1, 1)  # the backend's prediction on the first task is the same version
    (again,) = label_studio.api("GET", "/api/predictions", params={"task": second})
    assert again["model_version"] == prediction["model_version"] and again["result"] == prediction["result"]


def test_suggested_thresholds_are_printed_and_stored_in_the_config_only_with_apply(
    label_studio, ls_client, monkeypatch, capsys
):
    project = label_studio.create_project(_config(), title="calibration")
    config = ProjectConfig.parse(_config())
    tasks = label_studio.import_tasks(project, [{"image": f"/data/upload/{n}.png"} for n in range(len(HISTORY))])
    for task, (suggested, annotated) in zip(tasks, HISTORY):
        boxes, labels, scores = zip(*suggested)
        result = to_label_studio(detections(100, 100, boxes, labels, scores=list(scores)), config).result
        ls_client.create_prediction(task, result, model_version=VERSION)
        truth = to_label_studio(detections(100, 100, [b for b, _ in annotated], [x for _, x in annotated]), config)
        ls_client.create_annotation(task, truth.result)
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)

    assert main(["--project", str(project), "--suggest-thresholds"]) == 0
    printed = capsys.readouterr().out
    assert f"Suggested per-label box thresholds (best F1), from 3 annotated tasks of {VERSION}:" in printed
    assert "cats: 0.3 -> 0.63; precision 0.500 -> 1.000" in printed and "house: keep" in printed
    assert "add --apply to store them" in printed
    assert ls_client.project(project).config().label_thresholds == {}  # never silently

    assert main(["--project", str(project), "--suggest-thresholds", "--apply"]) == 0
    assert "Applied to project" in capsys.readouterr().out
    stored = ls_client.project(project).config()
    assert stored.label_thresholds == {"cats": 0.63, "house": 0.3}
    assert options_for(stored, None, BackendSettings(box_threshold=0.3)).threshold_for("cats") == 0.63
    assert main(["--project", str(project), "--suggest-thresholds"]) == 0  # calibrated from today's thresholds
    assert "cats: keep" in capsys.readouterr().out


def test_suggestions_for_projects_with_nothing_to_learn_from_are_a_sentence(
    label_studio, ls_client, monkeypatch, capsys
):
    brush = """<View><Image name="image" value="$image"/>
      <BrushLabels name="mask" toName="image"><Label value="cats"/></BrushLabels></View>"""
    region = to_label_studio(detections(100, 100, [A], ["cats"]), ProjectConfig.parse(_config())).result
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    cases = {  # config, the prediction's model_version (None: none), annotated -> what the sentence says
        "holds no predictions": (_config(), None, True),
        "holds no predictions: pre-annotate": (brush, None, False),
        "no submitted annotations yet": (_config(), VERSION, False),
        "come from other models (yolo-v8)": (_config(), "yolo-v8", True),
    }
    for sentence, (xml, version, annotated) in cases.items():
        project = label_studio.create_project(xml, title="nothing to learn")
        (task,) = label_studio.import_tasks(project, [{"image": "/data/upload/none.png"}])
        if version:
            ls_client.create_prediction(task, region, model_version=version)
        if annotated:
            ls_client.create_annotation(task, region)
        assert main(["--project", str(project), "--suggest-thresholds", "--apply"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("No per-label thresholds to suggest: ") and sentence in out, out
        assert "Applied" not in out and ls_client.project(project).config().label_thresholds == {}


def test_tasks_come_lowest_prediction_score_first_when_asked(label_studio, ls_client):
    project = label_studio.create_project(_config(), title="review order")
    tasks = label_studio.import_tasks(project, [{"image": f"/data/upload/{n}.png"} for n in range(4)])
    region = to_label_studio(detections(100, 100, [A], ["cats"]), ProjectConfig.parse(_config())).result
    for task, score in zip(tasks, (0.9, 0.1, 0.5, 0.3)):
        label_studio.api("POST", "/api/predictions", json={"task": task, "result": region, "score": score})
    ls_client.create_annotation(tasks[3], region)
    assert [t.id for t in ls_client.tasks(project).tasks] == tasks
    assert [t.id for t in ls_client.tasks(project, by_score=True).tasks] == [tasks[1], tasks[3], tasks[2], tasks[0]]
    by_score = ls_client.tasks(project, by_score=True, unlabeled_only=True, page_size=2)
    assert [t.id for t in by_score.tasks] == [tasks[1], tasks[2]] and by_score.total == 3
