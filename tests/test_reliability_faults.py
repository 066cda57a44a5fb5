"""Label Studio going away and coming back, with the real server stopped and restarted (``label_studio.stopped()``)
or its answers lost on the way back (``CuttingProxy``): pushes retry, then wait in the outbox; a pre-annotation run
finishes and queues what it could not write; the ML backend answers empty and recovers. After Label Studio returns,
every accepted result is there exactly once. Counts: 3 restarts, 3 lost answers; 4 + 2 pushes, 12 + 6 pre-annotated
tasks and 1 backend task checked for exactly one result each."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter

import httpx
import pytest

from pipeline import LazyPipeline, Options, load_image
from sync import BackendSettings, LabelStudioClient, Outbox, ProjectConfig, Pusher, to_label_studio
from sync.prelabel import PrelabelJob, prelabel
from tests.hostile import Answer, cutting_proxy, web_host
from tests.labelstudio import (
    BOX,
    GROUNDING_DINO_CONFIG,
    SEGMENTER,
    TEXT,
    backend_app,
    blob_masks,
    detections,
    expected,
    png,
    predictions_per_task,
    serve,
)

CONFIG = ProjectConfig.parse(GROUNDING_DINO_CONFIG)
BOXES_ONLY = """<View><Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image"><Label value="cats"/><Label value="house"/></RectangleLabels></View>"""


def results_for(image_bytes: bytes, seed: int):
    """A result with a box and a mask for an image, different per seed."""
    image = load_image(image_bytes)
    box = [seed % 7, seed % 5, image.width - 3, image.height - 2]
    return to_label_studio(
        detections(image.width, image.height, [box], ["cats"], masks=blob_masks(image.width, image.height, [box])),
        CONFIG,
    )


def stored(client: LabelStudioClient, task: int, kind: str) -> list[dict]:
    return client.predictions(task) if kind == "prediction" else client.annotations(task)


def test_pushes_across_a_label_studio_restart_retry_queue_and_land_exactly_once(
    label_studio, ls_client, ls_project, tmp_path
):
    images = [png(30 + i, 24, seed=40 + i) for i in range(4)]
    tasks = label_studio.upload_images(ls_project, {f"{i}.png": image for i, image in enumerate(images)})
    work = [
        (task, results_for(image, i), "annotation" if i % 2 else "prediction")
        for i, (task, image) in enumerate(zip(tasks, images))
    ]
    outbox = Outbox(tmp_path / "outbox")
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    patient = Pusher(ls_client, outbox, attempts=8, backoff=0.5, sleep=wait)  # up to 63 s of retries
    hasty = Pusher(ls_client, outbox, attempts=2, sleep=lambda seconds: None)
    outcomes = {}
    with label_studio.stopped():
        retrying = threading.Thread(target=lambda: outcomes.update(first=patient.push(*work[0])))
        retrying.start()
        queued = [hasty.push(*item) for item in work[1:]]
        while not waits:  # the patient push failed once and is waiting to retry
            time.sleep(0.05)
    retrying.join(timeout=90)  # Label Studio is back
    delivered = hasty.flush()

    assert [o.status for o in queued] == ["queued"] * 3 and all("unreachable" in o.error for o in queued)
    assert outcomes["first"].status == "created" and len(waits) >= 2  # it retried until the restart was over
    assert hasty.pending == 0 and all(o.status == "created" for o in delivered)
    again = [hasty.push(*item) for item in work]
    assert [o.status for o in again] == ["exists"] * 4
    for task, result, kind in work:
        (landed,) = stored(ls_client, task, kind)
        assert landed["result"] == result.result


@pytest.mark.parametrize("kind", ["prediction", "annotation"])
def test_a_push_whose_answer_is_lost_is_retried_without_a_duplicate(label_studio, ls_project, tmp_path, kind):
    image = png(36, 28, seed=50)
    (task,) = label_studio.upload_images(ls_project, {"lost.png": image})
    result = results_for(image, 3)
    request = b"POST /api/predictions" if kind == "prediction" else f"POST /api/tasks/{task}/annotations".encode()

    with cutting_proxy(label_studio.port) as proxy, LabelStudioClient(proxy.url, label_studio.token) as client:
        proxy.cut(request)
        outcome = Pusher(client, Outbox(tmp_path), sleep=lambda seconds: None).push(task, result, kind)

    assert proxy.cuts == 1 and outcome.status == "exists"  # the retry found what the lost answer had created
    with LabelStudioClient(label_studio.url, label_studio.token) as client:
        assert [r["result"] for r in stored(client, task, kind)] == [result.result]


@pytest.fixture
def web_images():
    images = {f"/p{i}.png": png(44, 30 + i, seed=60 + i) for i in range(12)}
    with web_host({path: Answer(data) for path, data in images.items()}) as host:
        yield host, images


def test_prelabel_run_keeps_going_when_label_studio_stops_and_nothing_is_lost_or_doubled(
    label_studio, ls_client, pipeline, web_images, tmp_path
):
    host, images = web_images
    project = label_studio.create_project(BOXES_ONLY, title="prelabel restart")
    tasks = label_studio.import_tasks(project, [{"image": host(path)} for path in images])
    outbox = Outbox(tmp_path / "outbox")
    job = PrelabelJob(project, prompt=None, options=Options(BOX), write_batch=4)  # the project's labels as prompt
    stops: list[int] = []
    with contextlib.ExitStack() as down:

        def stop_after_the_first_write(progress) -> None:
            if progress.done >= job.write_batch and not stops:
                stops.append(progress.done)
                down.enter_context(label_studio.stopped())

        progress = prelabel(ls_client, pipeline, job, outbox, stop_after_the_first_write)
    # Label Studio is back
    before_flush = sum(predictions_per_task(label_studio, project).values())
    delivered = Pusher(ls_client, outbox).flush()
    rerun = prelabel(ls_client, pipeline, job, outbox)

    assert stops == [4] and (progress.done, progress.failed, progress.queued) == (12, {}, 8) and before_flush == 4
    assert [o.status for o in delivered] == ["created"] * 8 and outbox.items() == []
    assert (rerun.done, rerun.skipped) == (0, 12)
    assert predictions_per_task(label_studio, project) == Counter({task: 1 for task in tasks})
    for task, path in zip(tasks, images):  # each task got its own image's prediction
        (landed,) = label_studio.api("GET", "/api/predictions", params={"task": task})
        config = ProjectConfig.parse(BOXES_ONLY)
        result = pipeline(images[path], "cats. house", Options(BOX), config.label_map())
        assert landed["result"] == to_label_studio(result, config).result


def test_prelabel_bulk_write_whose_answer_is_lost_is_not_written_twice(label_studio, pipeline, web_images, tmp_path):
    host, images = web_images
    project = label_studio.create_project(BOXES_ONLY, title="prelabel lost answer")
    tasks = label_studio.import_tasks(project, [{"image": host(path)} for path in list(images)[:6]])

    with cutting_proxy(label_studio.port) as proxy, LabelStudioClient(proxy.url, label_studio.token) as client:
        proxy.cut(f"POST /api/projects/{project}/import/predictions".encode())
        progress = prelabel(
            client,
            pipeline,
            PrelabelJob(project, prompt="cats", options=Options(BOX), write_batch=3),
            Outbox(tmp_path / "outbox"),
        )

    assert proxy.cuts == 1 and (progress.done, progress.failed, progress.queued) == (6, {}, 0)
    assert predictions_per_task(label_studio, project) == Counter({task: 1 for task in tasks})


def test_ml_backend_answers_empty_while_label_studio_is_down_and_recovers_after(
    label_studio, pipeline, tmp_path, caplog
):
    image = png(50, 40, seed=70)
    project = label_studio.create_project()
    (task,) = label_studio.upload_images(project, {"cat.png": image})
    data = label_studio.api("GET", f"/api/tasks/{task}")["data"]
    settings = BackendSettings(
        label_studio_url=label_studio.url,
        label_studio_token=label_studio.token,
        box_threshold=BOX,
        text_threshold=TEXT,
        segmenter=SEGMENTER,
        state_dir=tmp_path,
    )
    body = {
        "tasks": [{"id": task, "data": data}],
        "project": f"{project}.1",
        "label_config": GROUNDING_DINO_CONFIG,
        "params": {"context": None},
    }
    caplog.set_level(logging.WARNING)

    with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url:
        before = httpx.post(f"{url}/predict", json=body, timeout=60).json()["results"][0]
        with label_studio.stopped():
            during = httpx.post(f"{url}/predict", json=body, timeout=60)
            health = httpx.get(f"{url}/health", timeout=1)
        after = httpx.post(f"{url}/predict", json=body, timeout=60).json()["results"][0]

    # Label Studio away is a failure that passes: nothing is stored ([]), so the next run asks again
    assert during.status_code == 200 and during.json()["results"] == [[]] and health.status_code == 200
    assert f"Task {task}: nothing stored, the next run retries" in caplog.text and "Label Studio" in caplog.text
    assert before["result"] == after["result"] == expected(pipeline, image, "cats. house")[1].result != []
