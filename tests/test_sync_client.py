"""The Label Studio client against a real server: both token kinds, clear auth errors, paginated task lists,
and image downloads for every URL kind with the token kept on the Label Studio host."""

from __future__ import annotations

import time

import pytest

from sync import (
    AuthError,
    BackendSettings,
    DownloadError,
    LabelStudioClient,
    LabelStudioError,
    ProjectConfig,
    UnreachableError,
)
from tests.hostile import Answer, web_host
from tests.labelstudio import GROUNDING_DINO_CONFIG, LEGACY_TOKEN, exif_rotated_jpeg, free_port, png

IMAGE = png(30, 20)


@pytest.fixture(scope="module")
def image_host():
    """Another web server holding images: /img.png, /redirect (to /img.png), /big (streamed without a declared
    length: the limit must hold while streaming), /slow. Records requests and their headers."""
    routes = {
        "/img.png": Answer(IMAGE, headers={"Content-Type": "image/png"}),
        "/redirect": Answer(status=302, headers={"Location": "/img.png"}),
        "/big": Answer(b"\0" * 5000, declare_length=False),
        "/slow": Answer(IMAGE, delay=2),
    }
    with web_host(routes) as host:
        yield host


def test_legacy_token_and_personal_access_token_both_connect(label_studio):
    for token in (LEGACY_TOKEN, label_studio.personal_access_token()):
        with LabelStudioClient(label_studio.url, token) as client:
            assert client.whoami()["email"] == "admin@example.com"


def test_refused_token_gives_a_clear_error_without_the_token(label_studio):
    wrong = "f" * 40
    with LabelStudioClient(label_studio.url, wrong) as client, pytest.raises(AuthError) as refused:
        client.projects()

    assert refused.value.status == 401 and "refused the token" in str(refused.value)
    assert wrong not in str(refused.value) and wrong not in repr(client)
    with pytest.raises(AuthError, match="Label Studio refused to refresh"):
        LabelStudioClient(label_studio.url, label_studio.personal_access_token()[:-4] + "abcd").whoami()


def test_unreachable_server_and_bad_urls_give_clear_errors():
    port = free_port()
    with LabelStudioClient(f"http://127.0.0.1:{port}", LEGACY_TOKEN, timeout=2) as client:
        with pytest.raises(UnreachableError, match=f"127.0.0.1:{port} is unreachable"):
            client.projects()
    with pytest.raises(LabelStudioError, match="must start with http"):
        LabelStudioClient("localhost:8080", LEGACY_TOKEN)


def test_projects_are_listed_with_their_parsed_config(label_studio, ls_client):
    project = label_studio.create_project(title="listed project")

    listed = {p.id: p for p in ls_client.projects()}

    assert listed[project].title == "listed project"
    assert listed[project].config().labels == ["cats", "house"]
    assert ls_client.project(project).config() == ProjectConfig.parse(GROUNDING_DINO_CONFIG)


def test_tasks_are_paginated_and_filtered_to_unlabeled(label_studio, ls_client, ls_project):
    ids = label_studio.import_tasks(ls_project, [{"image": f"http://example.invalid/{i}.png"} for i in range(7)])
    for labeled in ids[1:3]:
        ls_client.create_annotation(labeled, [])

    first = ls_client.tasks(ls_project, page_size=3)
    unlabeled = ls_client.tasks(ls_project, page_size=3, page=2, unlabeled_only=True)
    beyond = ls_client.tasks(ls_project, page_size=3, page=9)

    assert (first.total, first.pages, first.has_next) == (7, 3, True)
    assert [t.id for t in first.tasks] == ids[:3] and first.tasks[1].is_labeled
    assert (unlabeled.total, [t.id for t in unlabeled.tasks], unlabeled.has_next) == (5, ids[5:], False)
    assert (beyond.tasks, beyond.total) == ([], 7)
    assert [t.id for t in ls_client.iter_tasks(ls_project, unlabeled_only=True, page_size=2)] == [ids[0]] + ids[3:]
    assert ls_client.task(ids[4]).data == {"image": "http://example.invalid/4.png"}


def test_bulk_predictions_land_on_their_tasks(label_studio, ls_client, ls_project):
    ids = label_studio.import_tasks(ls_project, [{"image": f"http://example.invalid/{i}.png"} for i in range(3)])
    region = {
        "id": "r1",
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "value": {"x": 1, "y": 2, "width": 3, "height": 4, "rectanglelabels": ["cats"]},
    }

    reply = ls_client.import_predictions(
        ls_project,
        [{"task": task, "result": [region], "score": 0.1 * n, "model_version": "bulk"} for n, task in enumerate(ids)],
    )

    assert reply["created"] == 3
    assert [t.model_versions for t in ls_client.tasks(ls_project).tasks] == [("bulk",)] * 3
    assert ls_client.task(ids[0]).model_versions == ("bulk",)
    stored = [ls_client.predictions(task) for task in ids]
    assert [(len(p), p[0]["score"], p[0]["result"][0]["id"]) for p in stored] == [
        (1, 0.0, "r1"),
        (1, 0.1, "r1"),
        (1, 0.2, "r1"),
    ]


def test_uploaded_and_local_file_images_download_with_the_token(label_studio, ls_client, ls_project):
    jpeg, _ = exif_rotated_jpeg()
    image = png(33, 17, seed=3)
    uploaded = label_studio.upload_images(ls_project, {"rotated.jpg": jpeg})
    local = label_studio.import_local_files(ls_project, {"local.png": image}, folder="client-test")
    config = ProjectConfig.parse(GROUNDING_DINO_CONFIG)

    upload_task, local_task = ls_client.task(uploaded[0]), ls_client.task(local[0])

    assert upload_task.data["image"].startswith("/data/upload/")
    assert local_task.data["image"] == "/data/local-files/?d=client-test/local.png"
    assert ls_client.task_image(upload_task, config) == jpeg
    assert ls_client.task_image(local_task, config) == image


def test_other_hosts_never_receive_the_token(ls_client, image_host):
    image_host.requests.clear()

    assert ls_client.download(image_host("/img.png")) == IMAGE
    assert ls_client.download(image_host("/redirect")) == IMAGE

    assert [request.path for request in image_host.requests] == ["/img.png", "/redirect", "/img.png"]
    assert not any(key.lower() == "authorization" for request in image_host.requests for key in request.headers)
    assert ls_client.is_label_studio(ls_client.url + "/data/upload/1/a.png")
    assert not ls_client.is_label_studio(image_host("/data/upload/1/a.png"))


def test_downloads_have_a_size_limit_and_a_timeout(label_studio, image_host):
    with LabelStudioClient(label_studio.url, LEGACY_TOKEN, timeout=0.5, max_image_bytes=4000) as client:
        with pytest.raises(DownloadError, match="over the size limit"):
            client.download(image_host("/big"))
        started = time.monotonic()
        with pytest.raises(DownloadError, match="no answer within 0.5 s"):
            client.download(image_host("/slow"))
        assert time.monotonic() - started < 1.9


def test_cloud_uris_go_through_label_studio_presign_and_unusable_urls_are_refused(ls_client, ls_project, label_studio):
    (task,) = label_studio.import_tasks(ls_project, [{"image": "s3://bucket/cat.jpg"}])

    presign = ls_client.resolve_url("s3://bucket/cat.jpg", task_id=task)

    assert presign.startswith(f"{label_studio.url}/tasks/{task}/presign/?fileuri=")
    with pytest.raises(DownloadError, match="404"):  # no S3 storage is connected to this project
        ls_client.download("s3://bucket/cat.jpg", task_id=task)
    with pytest.raises(DownloadError, match="expected http"):
        ls_client.download("cat.jpg")
    with pytest.raises(DownloadError, match="Label Studio answered"):  # 1.23 answers 500 for a missing upload
        ls_client.download("/data/upload/999/missing.png")


def test_client_from_the_seeds_environment_names(label_studio):
    with pytest.raises(LabelStudioError, match="Set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY"):
        LabelStudioClient.from_settings(BackendSettings.from_env({}))
    settings = BackendSettings.from_env(
        {"LABEL_STUDIO_HOST": label_studio.url, "LABEL_STUDIO_ACCESS_TOKEN": label_studio.token}
    )

    with LabelStudioClient.from_settings(settings) as client:
        assert client.url == label_studio.url and client.whoami()["email"] == "admin@example.com"


def test_an_error_page_is_named_not_dumped_and_no_cookie_leaves_label_studio(ls_client, image_host):
    with pytest.raises(LabelStudioError) as refused:
        ls_client.api("GET", "/no-such-page/")
    ls_client.projects()
    image_host.requests.clear()
    ls_client.download(image_host("/img.png"))  # the same host name, another port

    assert refused.value.status == 404 and "<" not in str(refused.value) and len(str(refused.value)) < 200
    assert "an HTML error page" in str(refused.value)
    assert len(ls_client._http.cookies) == 0
    assert not any(key.lower() == "cookie" for request in image_host.requests for key in request.headers)
