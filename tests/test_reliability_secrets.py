"""The Label Studio token stays with Label Studio: never sent to another host (a second web server on 127.0.0.1
records every header), never in logs, error messages, exceptions, API answers or the UI; and the ML-backend
routes refuse wrong basic-auth credentials. Both token kinds: the legacy key and a personal access token."""

from __future__ import annotations

import logging
import traceback

import httpx
import pytest
from gradio_client import Client

from pipeline import LazyPipeline, SettingsError
from sync import BackendSettings, LabelStudioClient, Outbox, ProjectConfig, Pusher, SyncError, to_label_studio
from tests.hostile import Answer, web_host
from tests.labelstudio import (
    BOX,
    GROUNDING_DINO_CONFIG,
    SEGMENTER,
    TEXT,
    backend_app,
    detections,
    free_port,
    png,
    serve,
)

IMAGE = png(40, 32, seed=31)


@pytest.fixture(scope="module")
def recorder():
    """Another image host, on the same address as Label Studio but another port."""
    with web_host({"/cat.png": Answer(IMAGE), "/hop": Answer(status=302, headers={"Location": "/cat.png"})}) as host:
        yield host


@pytest.fixture(params=["legacy token", "personal access token"])
def token(request, label_studio) -> str:
    return label_studio.token if request.param == "legacy token" else label_studio.personal_access_token()


def assert_secret_free(token: str, *texts: str) -> None:
    for text in texts:
        assert token not in text and token[-12:] not in text


def assert_recorder_got_no_credentials(recorder, token: str) -> None:
    assert recorder.requests, "the recorder was never asked: the test proves nothing"
    for request in recorder.requests:
        assert not {"authorization", "cookie"} & {name.lower() for name in request.headers}, request
        assert_secret_free(token, request.path, *request.headers.values())


@pytest.mark.parametrize("credentials_from", ["environment", "/setup"])
def test_image_hosts_other_than_label_studio_never_see_the_token(
    label_studio, pipeline, recorder, token, tmp_path, caplog, credentials_from
):
    caplog.set_level(logging.DEBUG)
    project = label_studio.create_project()
    (uploaded,) = label_studio.upload_images(project, {"cat.png": IMAGE})
    env = dict(label_studio_url=label_studio.url, label_studio_token=token) if credentials_from == "environment" else {}
    settings = BackendSettings(box_threshold=BOX, text_threshold=TEXT, segmenter=SEGMENTER, state_dir=tmp_path, **env)
    images = [
        recorder("/cat.png"),
        recorder("/hop"),
        recorder(f"/cat.png?next={label_studio.url}/api/projects"),
        label_studio.api("GET", f"/api/tasks/{uploaded}")["data"]["image"],
    ]
    recorder.requests.clear()

    with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url:
        setup = httpx.post(
            f"{url}/setup",
            timeout=10,
            json={
                "project": f"{project}.1",
                "schema": GROUNDING_DINO_CONFIG,
                "hostname": label_studio.url,
                "access_token": token,
            },
        )
        answer = httpx.post(
            f"{url}/predict",
            timeout=60,
            json={
                "tasks": [{"id": i, "data": {"image": image}} for i, image in enumerate(images)],
                "project": f"{project}.1",
                "label_config": GROUNDING_DINO_CONFIG,
                "params": {"context": None},
            },
        )

    results = [r["result"] for r in answer.json()["results"]]
    assert all(results) and results[0] == results[-1]  # Label Studio's upload came with the token; same pixels
    assert len(recorder.requests) == 4  # cat, hop, its redirect target, cat?next=
    assert_recorder_got_no_credentials(recorder, token)
    assert_secret_free(token, caplog.text, setup.text, answer.text)


def test_token_never_appears_in_logs_errors_exceptions_or_api_answers(label_studio, pipeline, token, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = token[:-6] + ("abcdef" if not token.endswith("abcdef") else "fedcba")
    errors: list[BaseException] = []
    for url, key in ((label_studio.url, wrong), (f"http://127.0.0.1:{free_port()}", token)):
        try:
            with LabelStudioClient(url, key, timeout=2) as client:
                client.projects()
        except SyncError as error:
            errors.append(error)
    result = to_label_studio(detections(40, 32, [[1, 1, 20, 20]], ["cats"]), ProjectConfig.parse(GROUNDING_DINO_CONFIG))
    with LabelStudioClient(label_studio.url, label_studio.token) as good:
        project = good.api("POST", "/api/projects", json={"title": "secrets", "label_config": GROUNDING_DINO_CONFIG})
    with LabelStudioClient(f"http://127.0.0.1:{free_port()}", token, timeout=2) as down:
        queued = Pusher(down, Outbox(tmp_path / "outbox"), attempts=1).push(1, result)
    settings = BackendSettings(box_threshold=BOX, text_threshold=TEXT, segmenter=SEGMENTER, state_dir=tmp_path)
    with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url:
        answers = [
            httpx.post(f"{url}/setup", json={"project": "5.1", "hostname": "no-scheme:8080", "access_token": token}),
            httpx.post(f"{url}/setup", json=[token, label_studio.url]),
            httpx.post(f"{url}/predict", json={"tasks": token, "project": "5.1"}),
            httpx.post(
                f"{url}/predict",
                timeout=30,
                json={
                    "tasks": [{"id": 9, "data": {"image": "/data/upload/1/x.png"}}],
                    "project": "5.1",
                    "label_config": GROUNDING_DINO_CONFIG,
                    "params": {"context": {"result": token}},
                },
            ),
            httpx.post(
                f"{url}/predict",
                timeout=30,
                json={
                    "tasks": [{"id": 9, "data": {"image": "/data/upload/1/x.png"}}],
                    "project": "5.1",
                    "label_config": GROUNDING_DINO_CONFIG,
                    "params": {"context": None},
                },
            ),
            httpx.post(f"{url}/webhook", json={"project": {"id": project["id"]}, "annotation": token}),
        ]

    assert len(errors) == 2 and queued.status == "queued"
    assert [a.status_code for a in answers] == [200, 400, 400, 400, 200, 200]
    texts = [
        caplog.text,
        queued.error or "",
        *(a.text for a in answers),
        *(line for error in errors for line in traceback.format_exception(error)),
        *(repr(error) for error in errors),
        *(p.read_text() for p in (tmp_path / "outbox").glob("*.json")),
    ]
    assert_secret_free(token, *texts)
    assert_secret_free(wrong, *texts)


def test_the_ui_never_shows_or_forwards_the_environments_token(label_studio, pipeline, recorder, tmp_path):
    from app import create_app

    settings = BackendSettings.from_env(
        {
            "LABEL_STUDIO_URL": label_studio.url,
            "LABEL_STUDIO_API_KEY": label_studio.token,
            "GROUNDLABEL_STATE_DIR": str(tmp_path),
        }
    )
    recorder.requests.clear()
    with serve(create_app(settings, LazyPipeline(pipeline=pipeline))) as url:
        pages = [httpx.get(f"{url}{path}", timeout=30).text for path in ("/", "/config", "/gradio_api/info")]
        ui = Client(url, verbose=False)
        connected = ui.predict(label_studio.url, "", "", api_name="/on_connect")
        elsewhere = ui.predict(recorder.url, "", "", api_name="/on_connect")
        typed_wrong = ui.predict(label_studio.url, "f" * 40, "", api_name="/on_connect")
        ui.close()

    assert "Connected as admin@example.com" in connected[0]
    assert "No Label Studio token" in elsewhere[0] and recorder.requests == []
    assert "refused the token" in typed_wrong[0] and "f" * 40 not in str(typed_wrong)
    assert_secret_free(label_studio.token, *pages, str(connected), str(elsewhere), str(typed_wrong))


ROUTES = [
    ("GET", "/health", None),
    ("POST", "/setup", {"project": "1.1"}),
    ("POST", "/predict", {"tasks": [], "label_config": GROUNDING_DINO_CONFIG}),
    ("POST", "/webhook", {"action": "PROJECT_UPDATED"}),
]
CREDENTIALS = {
    "none": None,
    "wrong password": ("labelstudio", "guess"),
    "wrong user": ("admin", "s3cret"),
    "empty": ("", ""),
    "right": ("labelstudio", "s3cret"),
}


def test_basic_auth_refuses_wrong_credentials_on_every_route_with_401(pipeline, tmp_path):
    settings = BackendSettings(basic_auth=("labelstudio", "s3cret"), state_dir=tmp_path)

    with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url:
        statuses = {
            (route, name): httpx.request(method, f"{url}{route}", json=body, auth=auth, timeout=30)
            for method, route, body in ROUTES
            for name, auth in CREDENTIALS.items()
        }

    for (route, name), answer in statuses.items():
        if name == "right":
            assert answer.status_code == 200, (route, answer.text)
        else:
            assert answer.status_code == 401, (route, name)
            assert answer.headers["www-authenticate"] == "Basic" and "s3cret" not in answer.text


@pytest.mark.parametrize(("user", "password"), [("labelstudio", ""), ("", "s3cret")])
def test_half_configured_basic_auth_refuses_to_start_open(user, password):
    with pytest.raises(SettingsError, match="BASIC_AUTH_USER and BASIC_AUTH_PASS"):
        BackendSettings.from_env({"BASIC_AUTH_USER": user, "BASIC_AUTH_PASS": password})


def test_basic_auth_also_guards_the_ui_which_acts_with_the_environments_token(pipeline, tmp_path):
    from app import create_app

    settings = BackendSettings.from_env(
        {"BASIC_AUTH_USER": "labelstudio", "BASIC_AUTH_PASS": "s3cret", "GROUNDLABEL_STATE_DIR": str(tmp_path)}
    )
    with serve(create_app(settings, LazyPipeline(pipeline=pipeline))) as url:
        anonymous = [httpx.get(f"{url}{path}", timeout=30).status_code for path in ("/config", "/gradio_api/info")]
        wrong = httpx.post(f"{url}/login", data={"username": "labelstudio", "password": "guess"}, timeout=30)
        with httpx.Client(base_url=url, timeout=30) as session:
            right = session.post("/login", data={"username": "labelstudio", "password": "s3cret"})
            logged_in = session.get("/config").status_code
        health = httpx.get(f"{url}/health", auth=("labelstudio", "s3cret"), timeout=30).status_code

    assert anonymous == [401, 401]
    assert wrong.status_code == 400 and right.status_code == 200
    assert (logged_in, health) == (200, 200)
