"""groundlabel as Label Studio's ML backend, driven by a real Label Studio: interactive prompts, batch retrieval
(one prediction per task, in order, broken tasks empty), the project's last prompt, thresholds from the config,
/setup that never loads a model, basic auth, and the seed's environment names."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter
from dataclasses import replace

import httpx
import numpy as np
import pytest

from pipeline import GroundingPipeline, LazyPipeline, PipelineSettings, parse_prompt
from pipeline.options import prompt_hash
from sync import BackendSettings, ProjectConfig, box_to_pixels, rle_to_mask
from tests.counting import count_calls
from tests.hostile import Answer, web_host
from tests.labelstudio import (
    BOX,
    GROUNDING_DINO_CONFIG,
    SEGMENTER,
    TEXT,
    backend_app,
    exif_rotated_jpeg,
    expected,
    png,
    predictions_per_task,
    prompt_context,
    serve,
)


@pytest.fixture(scope="module")
def ml_backend(pipeline, tmp_path_factory):
    """The ML-backend routes over the tiny models, served on 127.0.0.1: (url, settings)."""
    settings = BackendSettings(
        box_threshold=BOX, text_threshold=TEXT, segmenter=SEGMENTER, state_dir=tmp_path_factory.mktemp("backend-state")
    )
    with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url:
        yield url, settings


@pytest.fixture
def project_with_backend(label_studio, ml_backend):
    """A Grounding DINO example project connected to the backend: (project id, ML backend id)."""
    project = label_studio.create_project()
    return project, label_studio.register_ml_backend(project, ml_backend[0])


def interactive(label_studio, ml_id: int, task: int, context: dict) -> dict:
    return label_studio.api("POST", f"/api/ml/{ml_id}/interactive-annotating", json={"task": task, "context": context})[
        "data"
    ]


def retrieve_predictions(label_studio, project: int, tasks: list[int]) -> dict[int, list[dict]]:
    """Data Manager's "Retrieve Predictions" action, then every task's predictions."""
    label_studio.api(
        "POST",
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": project},
        json={"selectedItems": {"all": False, "included": tasks}},
    )
    return {task: label_studio.api("GET", "/api/predictions", params={"task": task}) for task in tasks}


def test_interactive_prompt_gives_labeled_boxes_and_masks_that_decode_to_the_pipelines(
    label_studio, project_with_backend, pipeline
):
    project, ml_id = project_with_backend
    image = png(64, 48, seed=1)
    (task,) = label_studio.upload_images(project, {"cat.png": image})

    answer = interactive(label_studio, ml_id, task, prompt_context("cats"))

    result, conversion = expected(pipeline, image, "cats")
    assert len(result) > 0 and answer["result"] == conversion.result
    assert (
        answer["model_version"]
        == f"groundlabel-gdino-tiny+{SEGMENTER}-box{BOX:g}-text{TEXT:g}-p"
        + prompt_hash(parse_prompt("cats"))
        + "-c"
        + ProjectConfig.parse(GROUNDING_DINO_CONFIG).digest
    )
    boxes = [r for r in answer["result"] if r["type"] == "rectanglelabels"]
    brushes = [r for r in answer["result"] if r["type"] == "brushlabels"]
    assert len(boxes) == len(brushes) == len(result)
    assert {label for r in answer["result"] for label in r["value"][r["type"]]} == {"cats"}
    for region, xyxy in zip(boxes, result.xyxy):
        np.testing.assert_allclose(box_to_pixels(region), np.clip(xyxy, 0, [64, 48, 64, 48]), atol=1e-3)
    for region, mask in zip(brushes, result.masks):
        np.testing.assert_array_equal(rle_to_mask(region), mask)


def test_interactive_request_without_prompt_text_answers_nothing(label_studio, project_with_backend, pipeline):
    project, ml_id = project_with_backend
    (task,) = label_studio.upload_images(project, {"cat.png": png(32, 32)})

    with count_calls(pipeline.detector.model) as forwards:
        answer = interactive(label_studio, ml_id, task, {"result": prompt_context("cats")["result"][:1]})

    # an answer, not an error: our version name, no regions, and no model ran
    assert answer["result"] == [] and answer["model_version"].startswith("groundlabel-") and forwards.count == 0


def test_batch_retrieval_sends_several_tasks_of_one_size_through_one_detector_forward(label_studio, pipeline, tmp_path):
    batched = GroundingPipeline(pipeline.detector, pipeline.segmenters, replace(pipeline.settings, batch_size=4))
    settings = BackendSettings(box_threshold=BOX, text_threshold=TEXT, segmenter=None, state_dir=tmp_path)
    project = label_studio.create_project()
    images = {f"same{i}.png": png(48, 36, seed=80 + i) for i in range(3)} | {"other.png": png(50, 36, seed=83)}
    tasks = label_studio.upload_images(project, images)
    with serve(backend_app(LazyPipeline(pipeline=batched), settings)) as url:
        label_studio.register_ml_backend(project, url)
        with count_calls(pipeline.detector.model) as forwards:
            predictions = retrieve_predictions(label_studio, project, tasks)

    assert forwards.count == 2  # the three 48x36 images together, the 50x36 one alone (padding would move boxes)
    for task, image in zip(tasks, images.values()):
        (prediction,) = predictions[task]
        assert prediction["result"] == expected(pipeline, image, "cats. house", segmenter=None)[1].result


def test_batch_retrieval_answers_each_task_in_order_broken_tasks_empty_and_transient_ones_nothing(
    label_studio, project_with_backend, pipeline, caplog
):
    project, _ = project_with_backend
    images = {"wide.png": png(72, 40, seed=2), "tall.png": png(30, 50, seed=3)}
    jpeg, _ = exif_rotated_jpeg()
    tasks = label_studio.upload_images(project, images)
    tasks += label_studio.import_local_files(
        project, {"rotated.jpg": jpeg, "broken.png": b"not an image"}, folder=f"batch-{project}"
    )
    tasks += label_studio.import_tasks(project, [{"image": "/data/upload/999/gone.png"}])

    started = time.monotonic()
    predictions = retrieve_predictions(label_studio, project, tasks)
    elapsed = time.monotonic() - started

    assert all(len(predictions[task]) == 1 for task in tasks[:4]), predictions
    good = dict(zip(tasks, [*images.values(), jpeg]))
    for task, image in good.items():  # no prompt typed yet: the config's labels are the prompt
        result, conversion = expected(pipeline, image, "cats. house")
        (prediction,) = predictions[task]
        assert prediction["result"] == conversion.result and len(result) > 0
        assert prediction["model_version"] == conversion.model_version
    sizes = [
        (p[0]["result"][0]["original_width"], p[0]["result"][0]["original_height"]) for p in map(predictions.get, good)
    ]
    assert sizes == [(72, 40), (30, 50), (60, 80)]  # each task got its own image's answer; the JPEG upright
    broken, gone = tasks[3:]
    assert predictions[broken][0]["result"] == [] and f"Task {broken}: empty prediction" in caplog.text
    # Label Studio 1.23 answers 500 for a missing upload: a failure that may pass, so nothing is stored
    assert predictions[gone] == [] and f"Task {gone}: nothing stored, the next run retries" in caplog.text
    print(f"batch of {len(tasks)} tasks through Label Studio: {elapsed:.2f} s")


def test_a_submitted_prompt_becomes_the_batch_prompt_and_a_new_one_makes_retrieval_predict_again(
    label_studio, project_with_backend, ml_backend, pipeline
):
    project, ml_id = project_with_backend
    image = png(40, 40, seed=4)
    first, second = label_studio.upload_images(project, {"a.png": image, "b.png": image})

    interactive(label_studio, ml_id, first, prompt_context("house"))  # trying a prompt on one task changes nothing
    labels_only = retrieve_predictions(label_studio, project, [second])[second]
    unchanged = retrieve_predictions(label_studio, project, [second])[second]
    project_json = label_studio.api("GET", f"/api/projects/{project}")
    event = {
        "action": "ANNOTATION_CREATED",
        "project": project_json,
        "task": {"id": first},
        "annotation": {
            "result": [{"from_name": "prompt", "to_name": "image", "type": "textarea", "value": {"text": ["cats"]}}]
        },
    }
    hook = httpx.post(f"{ml_backend[0]}/webhook", json=event, timeout=10).json()
    after_webhook = retrieve_predictions(label_studio, project, [second])[second]

    assert [p["result"] for p in labels_only] == [expected(pipeline, image, "cats. house")[1].result]
    assert len(unchanged) == 1  # same prompt, same version: Label Studio asks nothing
    assert hook["prompt"] == "cats"
    assert len(after_webhook) == 2 and after_webhook[1]["result"] == expected(pipeline, image, "cats")[1].result
    assert after_webhook[0]["model_version"] != after_webhook[1]["model_version"]  # the prompt's hash differs
    stored = json.loads((ml_backend[1].state_dir / "prompts.json").read_text())
    assert stored[str(project)] == "cats"


def test_number_tags_set_the_batch_thresholds_and_the_announced_version_so_reruns_add_nothing(
    label_studio, ml_backend, pipeline
):
    xml = GROUNDING_DINO_CONFIG.replace(
        "</View>\n  <RectangleLabels",
        '</View>\n  <Number name="box_threshold" toName="image" defaultValue="0.9999"/>\n  <RectangleLabels',
    )
    project = label_studio.create_project(label_config=xml)
    label_studio.register_ml_backend(project, ml_backend[0])
    image = png(50, 50, seed=5)
    (task,) = label_studio.upload_images(project, {"a.png": image})

    (prediction,) = retrieve_predictions(label_studio, project, [task])[task]
    again = [retrieve_predictions(label_studio, project, [task])[task] for _ in range(2)]
    announced = httpx.post(f"{ml_backend[0]}/setup", timeout=10, json={"project": f"{project}.1", "schema": xml})

    result, conversion = expected(pipeline, image, "cats. house", xml, box=0.9999)
    assert prediction["result"] == conversion.result and len(result) > 0
    assert "box0.9999-" in prediction["model_version"] and all(score > 0.9999 for score in result.scores)
    assert len(result) < len(expected(pipeline, image, "cats. house")[0])
    # /setup announces the version the predictions carry, so Label Studio does not predict again and again
    assert announced.json()["model_version"] == prediction["model_version"]
    assert [len(predictions) for predictions in again] == [1, 1]


def test_health_answers_within_label_studios_timeout_while_a_batch_runs(label_studio, ml_backend):
    url = ml_backend[0]
    project = label_studio.create_project()
    ids = label_studio.upload_images(project, {f"{i}.png": png(64, 64, seed=100 + i) for i in range(2)})
    tasks = [{"id": task, "data": label_studio.api("GET", f"/api/tasks/{task}")["data"]} for task in ids]
    httpx.post(
        f"{url}/setup",
        timeout=3,
        json={
            "project": f"{project}.1",
            "schema": GROUNDING_DINO_CONFIG,
            "hostname": label_studio.url,
            "access_token": label_studio.token,
        },
    )
    finished: list[float] = []

    def run_batch():
        httpx.post(
            f"{url}/predict",
            timeout=100,
            json={
                "tasks": tasks,
                "project": f"{project}.1",
                "label_config": GROUNDING_DINO_CONFIG,
                "params": {"context": None},
            },
        ).raise_for_status()
        finished.append(time.monotonic())

    batch = threading.Thread(target=run_batch)
    batch.start()
    time.sleep(0.3)
    answered = []
    while batch.is_alive() and len(answered) < 5:
        started = time.monotonic()
        httpx.get(f"{url}/health", timeout=1).raise_for_status()  # Label Studio waits 1 s
        answered.append((started, time.monotonic()))
        time.sleep(0.1)
    batch.join()

    assert answered and answered[0][1] < finished[0]  # health answered while inference was still running
    assert max(end - start for start, end in answered) < 1.0


def test_setup_answers_without_loading_models_and_predict_explains_missing_weights(label_studio, tmp_path):
    missing = LazyPipeline(settings=PipelineSettings(detector=str(tmp_path / "no-detector")))
    settings = BackendSettings(segmenter="mobile_sam", state_dir=tmp_path)
    project = label_studio.create_project()
    (task,) = label_studio.upload_images(project, {"a.png": png(20, 20)})

    with serve(backend_app(missing, settings)) as url:
        ml_id = label_studio.register_ml_backend(project, url)  # Label Studio calls /health and /setup
        state = label_studio.api("GET", f"/api/ml/{ml_id}")
        health = httpx.get(f"{url}/health", timeout=5).json()
        predict = httpx.post(
            f"{url}/predict",
            timeout=30,
            json={
                "tasks": [{"id": task, "data": {"image": "/data/upload/1/a.png"}}],
                "project": f"{project}.1",
                "label_config": GROUNDING_DINO_CONFIG,
                "params": {"context": None},
            },
        )

    assert state["readable_state"] == "Connected"
    assert (
        state["model_version"]
        == "groundlabel-no-detector+mobile_sam-box0.35-text0.25-p"
        + prompt_hash(parse_prompt("cats. house"))
        + "-c"
        + ProjectConfig.parse(GROUNDING_DINO_CONFIG).digest
    )
    assert health["status"] == "UP" and health["models"]["loaded"] is False and not missing.loaded
    assert predict.status_code == 503 and "no-detector" in predict.json()["detail"]


def test_basic_auth_guards_every_route_and_label_studio_connects_with_it(label_studio, pipeline, tmp_path):
    settings = BackendSettings(basic_auth=("labelstudio", "s3cret"), state_dir=tmp_path)
    project = label_studio.create_project()

    with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url:
        anonymous = [httpx.get(f"{url}/health").status_code, httpx.post(f"{url}/setup", json={}).status_code]
        wrong = httpx.get(f"{url}/health", auth=("labelstudio", "guess")).status_code
        ml_id = label_studio.register_ml_backend(project, url, basic_auth=("labelstudio", "s3cret"))
        state = label_studio.api("GET", f"/api/ml/{ml_id}")["readable_state"]

    assert anonymous == [401, 401] and wrong == 401 and state == "Connected"


def test_the_seeds_environment_names_are_honoured(monkeypatch):
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "GROUNDLABEL_SEGMENTER", "USE_SAM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABEL_STUDIO_HOST", "http://ls.example:8080")
    monkeypatch.setenv("LABEL_STUDIO_ACCESS_TOKEN", "abc123")
    monkeypatch.setenv("BOX_THRESHOLD", "0.4")
    monkeypatch.setenv("TEXT_THRESHOLD", "0.2")
    monkeypatch.setenv("USE_MOBILE_SAM", "true")
    monkeypatch.setenv("BASIC_AUTH_USER", "u")
    monkeypatch.setenv("BASIC_AUTH_PASS", "p")

    seed = BackendSettings.from_env()
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://preferred:8080")
    monkeypatch.setenv("GROUNDLABEL_SEGMENTER", "none")
    monkeypatch.setenv("BOX_THRESHOLD", "1.5")

    assert (seed.label_studio_url, seed.label_studio_token) == ("http://ls.example:8080", "abc123")
    assert (seed.box_threshold, seed.text_threshold, seed.segmenter, seed.basic_auth) == (
        0.4,
        0.2,
        "mobile_sam",
        ("u", "p"),
    )
    with pytest.raises(ValueError, match="BOX_THRESHOLD='1.5' is outside"):
        BackendSettings.from_env()
    monkeypatch.setenv("BOX_THRESHOLD", "0.5")
    assert (BackendSettings.from_env().label_studio_url, BackendSettings.from_env().segmenter) == (
        "http://preferred:8080",
        None,
    )
    # Label Studio's Segment Anything example names its model with SAM_CHOICE
    for name in ("GROUNDLABEL_SEGMENTER", "USE_MOBILE_SAM"):
        monkeypatch.delenv(name)
    for choice, segmenter in [("SAM", "sam_vit_h"), ("MobileSAM", "mobile_sam")]:
        monkeypatch.setenv("SAM_CHOICE", choice)
        assert BackendSettings.from_env().segmenter == segmenter
    monkeypatch.setenv("SAM_CHOICE", "ONNX")
    with pytest.raises(ValueError, match="ONNX exports are not supported"):
        BackendSettings.from_env()


def test_the_test_label_studio_runs_with_the_settings_the_readme_gives_users():
    from pathlib import Path

    from sync.testing import README_SETTINGS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert all(f"{name}={value}" in readme for name, value in README_SETTINGS.items())


def test_a_batch_past_its_time_budget_answers_nothing_yet_and_finishes_in_the_background(
    label_studio, pipeline, tmp_path, caplog
):
    settings = BackendSettings(
        label_studio_url=label_studio.url,
        label_studio_token=label_studio.token,
        box_threshold=BOX,
        text_threshold=TEXT,
        segmenter=SEGMENTER,
        state_dir=tmp_path,
        predict_budget=0.5,
    )
    project = label_studio.create_project(title="budget")
    images = {f"t{i:02d}.png": png(40, 32, seed=300 + i) for i in range(60)}
    ids = label_studio.upload_images(project, images)
    caplog.set_level(logging.INFO)

    with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url:
        ml_id = label_studio.register_ml_backend(project, url)
        retrieve_predictions(label_studio, project, ids)  # Label Studio stores what the first answer holds
        retrieve_predictions(label_studio, project, ids)  # again, while the background finishes the rest
        answer = interactive(label_studio, ml_id, ids[-1], prompt_context("cats"))  # answered meanwhile
        deadline = time.monotonic() + 300
        while httpx.get(f"{url}/health", timeout=5).json()["background"]["tasks"] and time.monotonic() < deadline:
            time.sleep(0.5)

    (later,) = re.findall(r"time budget of 0.5 s spent; (\d+) tasks answered \"nothing yet\"", caplog.text)
    assert 0 < int(later) < 60  # the first answer held predictions and "nothing yet" entries
    assert answer["result"]
    assert predictions_per_task(label_studio, project) == Counter({task: 1 for task in ids})  # all 60, none twice
    late = label_studio.api("GET", "/api/predictions", params={"task": ids[-1]})[0]
    assert late["result"] == expected(pipeline, images["t59.png"], "cats. house")[1].result


def test_an_image_host_down_during_retrieval_leaves_nothing_behind_and_the_next_retrieval_fills_the_task(
    label_studio, ml_backend, pipeline
):
    image = png(48, 40, seed=400)
    with web_host({"/photo.png": Answer(b"down for maintenance", status=503)}) as host:
        project = label_studio.create_project(title="host down")
        (task,) = label_studio.import_tasks(project, [{"image": host("/photo.png")}])
        label_studio.register_ml_backend(project, ml_backend[0])
        while_down = retrieve_predictions(label_studio, project, [task])[task]
        host.routes["/photo.png"] = Answer(image, headers={"Content-Type": "image/png"})
        back = retrieve_predictions(label_studio, project, [task])[task]

    assert while_down == []  # no empty prediction stored: Label Studio will ask again
    assert len(back) == 1 and back[0]["result"] == expected(pipeline, image, "cats. house")[1].result != []


def test_setup_and_predictions_announce_one_version_with_a_local_detector_before_and_after_loading(
    label_studio, model_paths, tmp_path
):
    # the default detector from its local copy (named unlike the model), loaded on the first prediction
    local = PipelineSettings.from_env(
        {
            "GROUNDLABEL_GROUNDING_DINO_TINY_CHECKPOINT": str(model_paths[0]),
            "GROUNDLABEL_DEVICE": "cpu",
            "GROUNDLABEL_OFFLINE": "1",
            "GROUNDLABEL_INPUT_SIZE": "320",
        }
    )
    models = LazyPipeline(local)
    settings = BackendSettings(box_threshold=BOX, text_threshold=TEXT, segmenter=None, state_dir=tmp_path)
    project = label_studio.create_project()
    (task,) = label_studio.upload_images(project, {"a.png": png(40, 30, seed=9)})

    with serve(backend_app(models, settings)) as url:
        ml_id = label_studio.register_ml_backend(project, url)  # Label Studio calls /health and /setup
        before = label_studio.api("GET", f"/api/ml/{ml_id}")["model_version"]
        assert not models.loaded
        (prediction,) = retrieve_predictions(label_studio, project, [task])[task]
        after = httpx.post(
            f"{url}/setup", timeout=10, json={"project": f"{project}.1", "schema": GROUNDING_DINO_CONFIG}
        )
        again = retrieve_predictions(label_studio, project, [task])[task]

    assert models.loaded and before.startswith(f"groundlabel-grounding-dino-tiny-box{BOX:g}-")
    assert prediction["model_version"] == before == after.json()["model_version"]
    assert len(again) == 1  # Label Studio skips a task that holds the announced version


def test_opening_a_task_asks_the_backend_only_when_the_project_prelabels_with_predictions(
    label_studio, project_with_backend
):
    """What the editor's task load (``GET /api/tasks/<id>/``) does: with Settings -> Annotation -> "Use predictions to
    prelabel tasks" off, nothing is predicted on open, so only what the annotator types or clicks is suggested (no
    batch-prompt suggestions underneath); on, a task without predictions gets one from the batch prompt."""
    project, _ = project_with_backend
    first, second = label_studio.upload_images(project, {"a.png": png(64, 48, seed=3), "b.png": png(64, 48, seed=4)})

    label_studio.api("PATCH", f"/api/projects/{project}/", json={"show_collab_predictions": False})
    label_studio.api("GET", f"/api/tasks/{first}/")
    assert label_studio.api("GET", "/api/predictions", params={"task": first}) == []

    label_studio.api("PATCH", f"/api/projects/{project}/", json={"show_collab_predictions": True})
    label_studio.api("GET", f"/api/tasks/{second}/")
    assert len(label_studio.api("GET", "/api/predictions", params={"task": second})) == 1
