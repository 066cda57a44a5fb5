"""The one outcome policy (``sync.outcomes``) in ``sync.prelabel``, against a real Label Studio: a task that keeps
failing in a way that may pass is retried for N runs, then settled as the ML backend settles it (an empty
prediction) and never fetched again; the ML backend and prelabel count its failures together."""

from __future__ import annotations

import httpx

from pipeline import LazyPipeline, Options
from sync import BackendSettings, Outbox, ProjectConfig
from sync.outcomes import OutcomePolicy
from sync.prelabel import PrelabelJob, prelabel
from tests.hostile import Answer, web_host
from tests.labelstudio import BOX, TEXT, backend_app, png, serve

CONFIG = """<View><Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image"><Label value="cats"/><Label value="house"/></RectangleLabels></View>"""
BUSY = Answer(b"try later", status=503)


def test_prelabel_gives_up_on_a_task_failing_transiently_n_times_and_then_never_fetches_it_again(
    label_studio, ls_client, pipeline, tmp_path
):
    image = png(40, 32, seed=500)
    outcomes, outbox = OutcomePolicy(tmp_path, max_retries=3), Outbox(tmp_path / "outbox")
    with web_host({"/busy.png": BUSY, "/ok.png": Answer(image, headers={"Content-Type": "image/png"})}) as host:
        project = label_studio.create_project(CONFIG, title="prelabel gives up")
        busy, good = label_studio.import_tasks(project, [{"image": host("/busy.png")}, {"image": host("/ok.png")}])
        job = PrelabelJob(project, "cats", Options(BOX))
        runs, fetched = [], []
        for _ in range(4):
            host.requests.clear()
            runs.append(prelabel(ls_client, pipeline, job, outbox, outcomes=outcomes))
            fetched.append([request.path for request in host.requests])

    assert [(run.done, run.skipped, list(run.failed)) for run in runs] == [
        (1, 0, [busy]),
        (0, 1, [busy]),
        (0, 1, [busy]),
        (0, 2, []),  # settled: skipped like a predicted task
    ]
    assert runs[0].failed[busy].endswith("answered 503 (try 1 of 3)")
    assert runs[1].failed[busy].endswith("answered 503 (try 2 of 3)")
    assert runs[2].failed[busy].endswith("answered 503 (failed 3 times: given up)")
    # not retried forever (the images of one run are downloaded side by side: their order is not kept)
    assert [sorted(paths) for paths in fetched] == [["/busy.png", "/ok.png"], ["/busy.png"], ["/busy.png"], []]
    (settled,) = label_studio.api("GET", "/api/predictions", params={"task": busy})
    assert settled["result"] == [] and settled["model_version"] == ProjectConfig.parse(CONFIG).version(
        pipeline.model_version(Options(BOX), pipeline.check_prompt("cats"))
    )
    assert len(label_studio.api("GET", "/api/predictions", params={"task": good})) == 1


def test_the_ml_backend_and_prelabel_count_a_tasks_transient_failures_together(
    label_studio, ls_client, pipeline, tmp_path
):
    settings = BackendSettings(
        label_studio_url=label_studio.url,
        label_studio_token=label_studio.token,
        box_threshold=BOX,
        text_threshold=TEXT,
        segmenter=None,
        state_dir=tmp_path,
        max_retries=3,
    )
    with web_host({"/busy.png": BUSY}) as host:
        project = label_studio.create_project(CONFIG, title="shared retries")
        (task,) = label_studio.import_tasks(project, [{"image": host("/busy.png")}])
        body = {
            "tasks": [{"id": task, "data": {"image": host("/busy.png")}}],
            "project": f"{project}.1",
            "label_config": CONFIG,
            "params": {"context": None},
        }
        with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url:
            retrieved = [httpx.post(f"{url}/predict", json=body, timeout=60).json()["results"] for _ in range(2)]
        outcomes = OutcomePolicy(settings.state_dir, settings.max_retries)  # as `python -m sync.prelabel` builds it
        progress = prelabel(
            ls_client,
            pipeline,
            PrelabelJob(project, "cats", Options(BOX)),
            Outbox(settings.outbox_dir),
            outcomes=outcomes,
        )

    assert retrieved == [[[]], [[]]]  # two runs of "Retrieve Predictions": nothing stored
    assert progress.failed[task].endswith("(failed 3 times: given up)")  # the third failure in all
    (settled,) = label_studio.api("GET", "/api/predictions", params={"task": task})
    assert settled["result"] == []
