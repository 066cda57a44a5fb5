"""The first lines a person reads are groundlabel's: the command lines print no library warnings on stderr (timm's
deprecations and mobile_sam's registry overwrites are filtered at the entry points, narrowly)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "default", **(env or {})},  # every warning shown once, as by default
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "Warning" in line or "warnings.warn" in line]


@pytest.mark.slow  # three fresh processes, each importing torch: 30-200 s by the machine's load
def test_the_command_lines_print_no_library_warnings(tmp_path):
    written = run("pipeline.testing", "write", str(tmp_path / "models"))
    env = dict(
        pair.split("=", 1) for pair in shlex.split(written.stdout.splitlines()[-1]) if "=" in pair
    )  # the line it prints for the app
    Image.fromarray(np.full((96, 128, 3), 120, np.uint8)).save(tmp_path / "yard.jpg")
    labeled = run("pipeline", str(tmp_path / "yard.jpg"), "--prompt", "dog", "--masks", "mobile_sam", "--out",
                  str(tmp_path / "out"), env=env)  # fmt: skip
    listed = run("pipeline", "--models")

    assert (tmp_path / "out" / "yard.groundlabel.json").is_file() and "mobile_sam" in listed.stdout
    for done in (written, labeled, listed):
        assert warning_lines(done.stderr) == [], done.args


def test_only_the_known_warnings_are_filtered():
    from pipeline.console import quiet_known_warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_warnings()
        for module, category, message in [
            ("timm.models.layers", FutureWarning, "Importing from timm.models.layers is deprecated, please import"),
            ("mobile_sam.modeling.tiny_vit_sam", UserWarning, "Overwriting tiny_vit_5m_224 in registry with ..."),
            ("timm.models.layers", UserWarning, "something else timm says"),
            ("pipeline.engine", FutureWarning, "Importing from timm.models.layers is deprecated"),
        ]:
            warnings.warn_explicit(message, category, "x.py", 1, module=module)
    assert [str(w.message) for w in caught] == [
        "something else timm says",
        "Importing from timm.models.layers is deprecated",
    ]
