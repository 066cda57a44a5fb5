"""The command line and segmenter weight resolution, on models saved to disk."""

import json
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from segment_anything import SamPredictor

from pipeline import (
    MaskPrompt,
    Options,
    PipelineSettings,
    SettingsError,
    WeightsError,
    load_image,
    segmenter_spec,
)
from pipeline.__main__ import main
from pipeline.segmenter import Segmenter
from pipeline.testing.models import save_segmenter
from pipeline.weights import resolve_checkpoint


def test_cli_writes_an_annotated_png_and_the_detections_json(model_paths, photo, tmp_path, monkeypatch, pipeline):
    detector_dir, sam_checkpoint = model_paths
    monkeypatch.setenv("GROUNDLABEL_SAM_TINY_TEST_CHECKPOINT", str(sam_checkpoint))
    Image.fromarray(photo).save(tmp_path / "yard.png")
    code = main(
        [
            str(tmp_path / "yard.png"),
            "--prompt",
            "brown dog:dog. possum",
            "--labels",
            "dog",
            "--detector",
            str(detector_dir),
            "--masks",
            "sam_tiny_test",
            "--box-threshold",
            "0.4",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    written = json.loads((tmp_path / "out" / "yard.groundlabel.json").read_text())
    expected = pipeline(photo, "brown dog:dog. possum", Options(0.4, segmenter="sam_tiny_test"))
    assert [d["box_xyxy"] for d in written["detections"]] == [[round(float(v), 2) for v in b] for b in expected.xyxy]
    assert {d["label"] for d in written["detections"]} <= {"dog", None}
    assert written["unmapped"] == ["possum"]
    drawn = Image.open(tmp_path / "out" / "yard.groundlabel.png")
    assert drawn.size == (640, 480)


def test_cli_reports_a_bad_image_and_exits_non_zero(model_paths, tmp_path, capsys):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    code = main(
        [
            str(tmp_path / "broken.jpg"),
            "--prompt",
            "dog",
            "--detector",
            str(model_paths[0]),
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 1
    assert "not a readable image" in capsys.readouterr().err


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda tmp: tmp / "missing.jpg", "missing.jpg: No such file or directory"),
        (
            lambda tmp: _write(tmp / "notes.jpg", b"a text file, not a JPEG"),
            "notes.jpg: The data is not a readable image",
        ),
        (lambda tmp: _mkdir(tmp / "empty"), "empty: a folder with no images in it"),
    ],
    ids=["missing file", "text named .jpg", "empty folder"],
)
def test_cli_checks_the_inputs_before_any_model_loads(make, says, tmp_path, capsys, monkeypatch):
    """Exit 1 (an input is not usable) with one line naming it, and no model loaded: the detector named does not
    even exist, which a load would have reported with exit 2."""
    import pipeline.__main__ as cli

    loads = []
    monkeypatch.setattr(cli.GroundingPipeline, "from_settings", lambda *args: loads.append(args))
    code = main(
        [str(make(tmp_path)), "--prompt", "dog", "--detector", str(tmp_path / "no-detector"), "--device", "cpu"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and loads == []
    assert len(err) == 1 and says in err[0]


def test_cli_labels_the_usable_images_and_exits_1_for_the_rest(model_paths, photo, tmp_path, capsys):
    Image.fromarray(photo).save(tmp_path / "yard.png")
    (tmp_path / "notes.jpg").write_text("not an image")
    code = main(
        [
            str(tmp_path),
            str(tmp_path / "gone.png"),
            "--prompt",
            "dog",
            "--detector",
            str(model_paths[0]),
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and (tmp_path / "out" / "yard.groundlabel.json").is_file()
    assert "notes.jpg: The data is not a readable image" in err and "gone.png: No such file or directory" in err


def test_the_exit_codes_are_documented_in_help_and_readme(capsys):
    from pipeline.__main__ import EXIT_CODES

    with pytest.raises(SystemExit):
        main(["--help"])
    assert EXIT_CODES in capsys.readouterr().out
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert all(f"`{code}`" in readme.split("### Exit codes", 1)[1].split("\n#", 1)[0] for code in "012")


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _mkdir(path):
    path.mkdir()
    return path


def test_cli_explains_missing_detector_weights(tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")  # a usable input: the load is what fails
    code = main(
        [str(tmp_path / "x.png"), "--prompt", "dog", "--detector", str(tmp_path / "missing"), "--device", "cpu"]
    )
    assert code == 2
    assert "GROUNDLABEL_DETECTOR=/path/to/dir" in capsys.readouterr().err


def test_mobile_sam_loads_from_a_checkpoint_and_matches_its_predictor(tmp_path, photo):
    checkpoint = save_segmenter(tmp_path / "mobile_sam.pt", "mobile_sam")
    segmenter = Segmenter(segmenter_spec("MobileSAM"), checkpoint, device="cpu")
    boxes = np.array([[10, 20, 200, 220], [300, 100, 630, 470]], dtype=np.float32)
    masks = segmenter.decode(load_image(photo), [MaskPrompt.from_box(box) for box in boxes])
    predictor = SamPredictor(segmenter.predictor.model)
    predictor.set_image(photo)
    for box, mask in zip(boxes, masks):
        assert np.array_equal(mask, predictor.predict(box=box, multimask_output=False)[0][0])


def test_checkpoint_comes_from_the_env_variable_then_the_cache_dir(tmp_path):
    spec = segmenter_spec("vit_b")
    env = {"GROUNDLABEL_CACHE": str(tmp_path / "cache")}
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / spec.filename).write_bytes(b"x")

    def resolved(env):
        settings = PipelineSettings.from_env(env)
        return resolve_checkpoint(spec, settings.checkpoints.get(spec.name), settings.cache_dir, settings.offline)

    assert resolved(env) == tmp_path / "cache" / spec.filename
    (tmp_path / "mine.pth").write_bytes(b"x")
    assert resolved({**env, spec.env_var: str(tmp_path / "mine.pth")}) == tmp_path / "mine.pth"
    assert resolved({**env, "SAM_CHECKPOINT": str(tmp_path / "mine.pth")}) == tmp_path / "cache" / spec.filename
    # Label Studio's example backends' names, for the checkpoints they mean
    for name, segmenter in [
        ("SAM_CHECKPOINT", "sam_vit_h"),
        ("VITH_CHECKPOINT", "sam_vit_h"),
        ("MOBILESAM_CHECKPOINT", "mobile_sam"),
    ]:
        assert PipelineSettings.from_env({name: str(tmp_path / "mine.pth")}).checkpoints == {
            segmenter: str(tmp_path / "mine.pth")
        }


def test_broken_checkpoint_is_a_weights_error(tmp_path):
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a usable sam_tiny_test checkpoint"):
        Segmenter(segmenter_spec("sam_tiny_test"), tmp_path / "broken.pth", device="cpu")


def test_unknown_segmenter_lists_the_choices():
    with pytest.raises(SettingsError, match="choose one of sam_vit_b, sam_vit_l, sam_vit_h, mobile_sam"):
        segmenter_spec("sam3")


@pytest.mark.parametrize("command", [["pipeline"], ["sync.prelabel", "--project", "1"]])
def test_unknown_segmenter_on_a_command_line_is_one_line_and_exit_2(command, tmp_path):
    import subprocess
    import sys

    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    args = [str(image), "--prompt", "dog"] if command == ["pipeline"] else []
    done = subprocess.run(
        [sys.executable, "-m", *command, *args, "--masks", "nope"],
        capture_output=True,
        text=True,
        env={"PATH": "", "HF_HUB_OFFLINE": "1", "LABEL_STUDIO_URL": "http://127.0.0.1:9", "LABEL_STUDIO_API_KEY": "x"},
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: Unknown segmenter 'nope'; choose one of sam_vit_b, sam_vit_l, sam_vit_h, mobile_sam, "
        "sam2_1_hiera_tiny, sam2_1_hiera_small, sam2_1_hiera_base_plus, sam2_1_hiera_large, sam_hq_vit_b, "
        "sam_hq_vit_l, sam_hq_vit_h."
    )
    assert "Traceback" not in done.stderr


def _refusing_port() -> int:
    """A loopback port nothing listens on: a connection to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_port():
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_an_unreachable_hub_is_said_as_what_happened(monkeypatch, silent_port):
    from huggingface_hub import constants

    from pipeline.weights import check_hub

    def no_dns(host, *args, **kwargs):  # a resolver stub: no name is looked up for real
        assert host == "hub.example.invalid"
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def reason(endpoint: str) -> str:
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        with pytest.raises(WeightsError) as raised:
            check_hub("IDEA-Research/grounding-dino-tiny", timeout=0.5)
        message = str(raised.value)
        assert message.startswith("The detector 'IDEA-Research/grounding-dino-tiny' is not on this machine")
        assert "GROUNDLABEL_OFFLINE=1" in message and "\n" not in message
        return message

    with monkeypatch.context() as patched:
        patched.setattr(socket, "getaddrinfo", no_dns)
        assert "the name hub.example.invalid did not resolve" in reason("http://hub.example.invalid")
    refused = reason(f"http://127.0.0.1:{_refusing_port()}")
    assert "127.0.0.1 refused the connection" in refused and "did not answer" not in refused
    assert "127.0.0.1 did not answer within 0.5 s" in reason(f"http://127.0.0.1:{silent_port}")


def test_a_checkpoint_host_that_refuses_is_said_so(tmp_path):
    spec = replace(segmenter_spec("mobile_sam"), url=f"http://127.0.0.1:{_refusing_port()}/mobile_sam.pt")
    with pytest.raises(
        WeightsError, match=r"Could not download mobile_sam weights: 127\.0\.0\.1 refused the connection"
    ):
        resolve_checkpoint(spec, None, tmp_path, offline=False, timeout=2)
    assert not (tmp_path / spec.filename).exists()
