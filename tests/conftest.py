"""Shared fixtures: offline mode, tiny random models saved to disk, and a pipeline loaded from them."""

from __future__ import annotations

import os
import signal

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GROUNDLABEL_OFFLINE", "1")
os.environ.setdefault("GROUNDLABEL_INPUT_SIZE", "320")  # pipeline.testing.models.TEST_INPUT_SIZE, for subprocesses too

import numpy as np
import pytest

from pipeline.testing.tiny_sam import register_tiny_sam

pytest_plugins = ["tests.labelstudio"]

register_tiny_sam()

# The fixtures that make a test need a real Label Studio or chromium: the marker each one brings (see pytest.ini).
_MARKER_OF_FIXTURE = {"label_studio": "labelstudio", "browser": "browser"}
# Modules whose tests need neither yet take many seconds each (subprocesses that import torch, OpenVINO conversions,
# real-shape or many model runs, dataset exports, video decoding, the toy models' right-answer runs, Gradio's client):
# the "slow" tier; single slow tests elsewhere carry @pytest.mark.slow. Measured with --durations=0 (2 cores).
_SLOW_MODULES = {
    "test_export.py",
    "test_offline.py",
    "test_pipeline_cli_and_weights.py",
    "test_pipeline_inference.py",
    "test_pipeline_mm_grounding_dino.py",
    "test_pipeline_open_vocab.py",
    "test_pipeline_runtime.py",
    "test_pipeline_sam2.py",
    "test_pipeline_video.py",
    "test_toy_models.py",
    "test_ui_api.py",
}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure() -> None:
    """SIGTERM stops the run like Ctrl-C does: pytest then tears the fixtures down (servers, Ray, subprocesses)
    instead of dying with them still running."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt_again() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_runtest_setup() -> None:
    """Before each test, SIGTERM and Ctrl-C interrupt again, whatever handler an earlier test's library left."""
    _interrupt_again()


def pytest_runtest_call() -> None:
    """Again once the fixtures are up: ``ray.init`` in a fixture installs a SIGTERM handler that raises SystemExit,
    which pytest counts as one failed test and then runs on, instead of stopping the run."""
    _interrupt_again()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a Label Studio or chromium fixture (directly or through another fixture), and every
    test of a slow module."""
    for item in items:
        if item.path.name in _SLOW_MODULES:
            item.add_marker("slow")
        for fixture, marker in _MARKER_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


@pytest.fixture(scope="session")
def model_paths(tmp_path_factory):
    """(Grounding DINO dir, tiny SAM checkpoint) with random weights, saved once per test session."""
    from pipeline.testing.models import cached_models

    return cached_models(str(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="session")
def pipeline(model_paths):
    from pipeline.testing.models import load_tiny_pipeline

    detector_dir, sam_checkpoint = model_paths
    return load_tiny_pipeline(detector_dir, sam_checkpoint)


@pytest.fixture(scope="session")
def app_settings(tmp_path_factory):
    """The test app's settings: masks from the tiny SAM, outbox and prompts in a temporary state dir."""
    from sync import BackendSettings

    return BackendSettings(segmenter="sam_tiny_test", state_dir=tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="session")
def app_url(pipeline, app_settings):
    """The real app (UI + ML-backend routes) serving the tiny-model pipeline, configured by ``app_settings``."""
    from app import create_app
    from pipeline import LazyPipeline
    from sync.testing import serve

    with serve(create_app(app_settings, LazyPipeline(pipeline=pipeline))) as url:
        yield url


@pytest.fixture
def photo() -> np.ndarray:
    """A 640x480 RGB image with some structure (random noise over a gradient)."""
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 200, 640, dtype=np.float32)[None, :, None].repeat(480, 0).repeat(3, 2)
    return (gradient + rng.integers(0, 55, (480, 640, 3))).astype(np.uint8)
