"""Bad input through the command line (``python -m pipeline``) and the app (its Gradio API, as the page calls it):
every unusable image, prompt or Label Studio URL is answered with a sentence that says what is wrong; nothing
crashes, and good input in the same run is still processed. Counts: 7 unusable files in one CLI run, 5 refused
and 5 unicode prompts per front end, 6 uploads (one over the byte limit) and 4 Label Studio URLs in the app."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from gradio_client import Client, handle_file

from pipeline.__main__ import main
from sync.settings import DEFAULT_MAX_IMAGE_BYTES
from tests.hostile import EMPTY_PROMPTS, UNICODE_PROMPTS, broken_images, prompt_of_tokens
from tests.labelstudio import free_port, png

BROKEN = broken_images()
REFUSED_PROMPTS = {
    **{name: (text, "prompt is empty") for name, text in EMPTY_PROMPTS.items()},
    "257 tokens": (prompt_of_tokens(257), "257 tokens long; the detector reads at most 256"),
}


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """Each broken image as a file, a good one, a missing path and a directory: (paths, reasons, the good one)."""
    folder = tmp_path_factory.mktemp("cli-images")
    reasons = {}
    for i, (data, words) in enumerate(BROKEN.values()):
        path = folder / f"broken{i}.png"
        path.write_bytes(data)
        reasons[path] = words
    reasons[folder / "missing.png"] = "No such file"
    (folder / "a-folder.png").mkdir()
    reasons[folder / "a-folder.png"] = "a folder with no images"
    good = folder / "good.png"
    good.write_bytes(png(48, 36, seed=7))
    return reasons, good


def cli(model_paths, tmp_path, capsys, images, prompt: str = "cats") -> tuple[int, str]:
    code = main(
        [
            *map(str, images),
            "--prompt",
            prompt,
            "--detector",
            str(model_paths[0]),
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    return code, capsys.readouterr().err


def test_cli_reports_every_unusable_image_and_still_labels_the_good_one(model_paths, tmp_path, capsys, image_files):
    reasons, good = image_files

    code, err = cli(model_paths, tmp_path, capsys, [*reasons, good])

    assert code == 1 and "Traceback" not in err
    for path, words in reasons.items():
        (line,) = [line for line in err.replace("\r", "\n").splitlines() if line.startswith(f"{path}: ")]
        assert words in line, line
    assert json.loads((tmp_path / "out" / "good.groundlabel.json").read_text())["width"] == 48
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.groundlabel.json", "good.groundlabel.png"]


@pytest.mark.parametrize("case", REFUSED_PROMPTS)
def test_cli_refuses_a_prompt_with_nothing_to_look_for_or_too_many_tokens(
    model_paths, tmp_path, capsys, image_files, case
):
    prompt, words = REFUSED_PROMPTS[case]

    code, err = cli(model_paths, tmp_path, capsys, [image_files[1]], prompt)

    assert code != 0 and words in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("prompt", UNICODE_PROMPTS)
def test_cli_reads_unicode_prompts(model_paths, tmp_path, capsys, image_files, prompt):
    code, err = cli(model_paths, tmp_path, capsys, [image_files[1]], prompt)

    written = json.loads((tmp_path / "out" / "good.groundlabel.json").read_text())
    assert code == 0 and "Traceback" not in err
    assert {d["label"] for d in written["detections"]} <= {"cats", "house"} and written["detections"]


@pytest.fixture(scope="module")
def ui(app_url):
    """The app's Gradio API, called the way its page calls it."""
    client = Client(app_url, verbose=False)
    yield client
    client.close()


def detect_all(ui, path, prompt: str) -> tuple:
    """The playground's Detect button: what the page shows (image, message, table, download, model status)."""
    return ui.predict(
        handle_file(str(path)),
        prompt,
        "Boxes",
        "sam_tiny_test",
        0.3,
        0.25,
        "",
        True,  # the app's detector, masks shown
        0.5,  # the duplicate (NMS) threshold
        "",  # no per-label box thresholds
        api_name="/playground_detect",
    )


def detect(ui, path, prompt: str) -> str:
    """The message shown under the result."""
    return detect_all(ui, path, prompt)[1]


@pytest.mark.parametrize("case", BROKEN)
def test_app_explains_an_unusable_upload(ui, image_files, case):
    (path,) = [p for p, words in image_files[0].items() if p.name == f"broken{list(BROKEN).index(case)}.png"]

    message = detect(ui, path, "cats")

    assert "gl-error" in message and BROKEN[case][1] in message


def test_app_refuses_an_upload_over_the_image_byte_limit_before_storing_it(app_url):
    too_big = httpx.post(
        f"{app_url}/gradio_api/upload", timeout=60, files={"files": ("huge.png", bytes(DEFAULT_MAX_IMAGE_BYTES + 1))}
    )

    assert too_big.status_code == 413 and f"maximum allowed size of {DEFAULT_MAX_IMAGE_BYTES} bytes" in too_big.text


@pytest.mark.parametrize("case", REFUSED_PROMPTS)
def test_app_refuses_a_prompt_with_nothing_to_look_for_or_too_many_tokens(ui, image_files, case):
    prompt, words = REFUSED_PROMPTS[case]

    message = detect(ui, image_files[1], prompt)

    assert "gl-error" in message and words in message


@pytest.mark.parametrize("prompt", UNICODE_PROMPTS)
def test_app_reads_unicode_prompts(ui, image_files, prompt):
    _, message, table, *_ = detect_all(ui, image_files[1], prompt)

    count = int(re.search(r"<strong>(\d+) detections?</strong>", message).group(1))
    labels = {row[1] for row in table["data"]}
    assert count == len(table["data"]) > 0 and labels <= {"cats", "house"}, (message, labels)


LABEL_STUDIO_URLS = {
    "file:///etc/passwd": "must start with http",
    "not a url": "must start with http",
    "http://169.254.169.254": "link-local",
    "http://127.0.0.1:{free}": "unreachable",
}


@pytest.mark.parametrize("url", LABEL_STUDIO_URLS)
def test_app_refuses_unusable_label_studio_urls(ui, url):
    # url, token and the Detector dropdown ("": the app's detector)
    connection = ui.predict(url.format(free=free_port()), "0" * 40, "", api_name="/on_connect")[0]

    assert "gl-error" in connection and LABEL_STUDIO_URLS[url] in connection
