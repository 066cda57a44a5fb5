"""A real Label Studio server for tests, and helpers to fill it (a pytest plugin, see tests/conftest.py).

Fixtures
--------
``label_studio`` (session): one ``label-studio`` server on 127.0.0.1 and a free port, admin ``ADMIN_EMAIL`` with the
legacy token ``LEGACY_TOKEN``, local-files serving on (document root ``label_studio.files_root``). The first run
migrates a template data dir under ``~/.cache/groundlabel/tests`` (~20 s, GROUNDLABEL_TEST_CACHE moves it); later
sessions copy it (~3 s). Stopped by PID at the end of the session.

``ls_client`` (function): a ``sync.LabelStudioClient`` for that server with the legacy token.

``ls_project`` (function): a new project with ``GROUNDING_DINO_CONFIG`` (Label Studio's Grounding DINO example);
its id.

Helpers on ``LabelStudioServer``: ``create_project``, ``upload_images`` (files -> ``/data/upload/...`` tasks),
``import_local_files`` (files under the document root -> ``/data/local-files/?d=...`` tasks), ``import_tasks``
(raw task data), ``personal_access_token`` (a JWT personal access token), ``register_ml_backend``, and
``with label_studio.stopped(): ...`` which stops the server and restarts it (same port, same data) on exit.

``running_label_studio()`` is the same server as a context manager, for benchmarks and scripts.

``serve(app)`` runs any ASGI app (FastAPI, Gradio) with uvicorn on 127.0.0.1 in a thread: ``with serve(app) as url``.

The ML backend under test: ``backend_app(models, settings)`` (its routes on a bare FastAPI app), ``expected(...)``
(what it should answer: the pipeline run directly and converted), ``prompt_context(text)`` (an interactive request's
context) and the tiny models' thresholds ``BOX`` / ``TEXT`` with the ``SEGMENTER`` they use.

Test data: ``exif_rotated_jpeg()`` (a JPEG shown turned by EXIF, with a red square's upright box), ``png(w, h)``,
``detections(...)`` (a hand-made ``DetectionResult``) and ``blob_masks(...)`` (a mask inside each box).
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from PIL import Image

from pipeline import DetectionResult, LazyPipeline, Options
from sync import BackendSettings, ProjectConfig, to_label_studio
from sync.backend import create_router
from sync.testing import (  # noqa: F401 - re-exported for the tests
    ADMIN_EMAIL,
    GROUNDING_DINO_CONFIG,
    LEGACY_TOKEN,
    LabelStudioServer,
    free_port,
    running_label_studio,
    serve,
)

# The tiny random detector scores most of its 20 queries near 1.0: a high box threshold keeps 3-9 boxes per image,
# so the tiny SAM runs a few times per task, not 20.
BOX, TEXT = 0.9995, 0.25
SEGMENTER = "sam_tiny_test"


def backend_app(models: LazyPipeline, settings: BackendSettings) -> FastAPI:
    app = FastAPI()
    app.include_router(create_router(models, settings))
    return app


def expected(
    pipeline,
    image: bytes,
    prompt: str,
    config_xml: str = GROUNDING_DINO_CONFIG,
    box: float = BOX,
    segmenter: str | None = SEGMENTER,
):
    """What the backend should answer: the pipeline run directly, converted for the config."""
    config = ProjectConfig.parse(config_xml)
    result = pipeline(image, prompt, Options(box, TEXT, segmenter), config.label_map())
    return result, to_label_studio(result, config)


def interactive_answer(
    label_studio,
    pipeline,
    settings: BackendSettings,
    image: bytes,
    prompt: str,
    label_config: str = GROUNDING_DINO_CONFIG,
) -> dict:
    """What the ML backend over ``pipeline`` answers Label Studio for a text prompt on a new task showing ``image``
    (a project with ``label_config``, the backend registered with it, the request sent by Label Studio)."""
    with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url:
        project = label_studio.create_project(label_config)
        ml_id = label_studio.register_ml_backend(project, url)
        (task,) = label_studio.upload_images(project, {"image.png": image})
        return label_studio.api(
            "POST", f"/api/ml/{ml_id}/interactive-annotating", json={"task": task, "context": prompt_context(prompt)}
        )["data"]


def submit_prompt(url: str, project: int | str, text: str, config: str = GROUNDING_DINO_CONFIG) -> dict:
    """Label Studio's webhook call for an annotation submitted with ``text`` in the prompt TextArea of ``project``
    (an id, or Label Studio's "<id>.<timestamp>"); the backend's answer."""
    event = {
        "action": "ANNOTATION_CREATED",
        "project": {"id": int(str(project).split(".")[0]), "label_config": config},
        "annotation": {
            "result": [{"from_name": "prompt", "to_name": "image", "type": "textarea", "value": {"text": [text]}}]
        },
    }
    return httpx.post(f"{url}/webhook", json=event, timeout=10).json()


def prompt_context(text: str) -> dict:
    """An interactive context as the labeling UI sends it, with an unrelated region first."""
    return {
        "result": [
            {
                "from_name": "label",
                "to_name": "image",
                "type": "rectanglelabels",
                "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["cats"]},
            },
            {"from_name": "prompt", "to_name": "image", "type": "textarea", "value": {"text": [text]}},
        ]
    }


def exif_rotated_jpeg(
    width: int = 80, height: int = 60, square: tuple[int, int, int] = (10, 5, 20)
) -> tuple[bytes, tuple[int, int, int, int]]:
    """A ``width`` x ``height`` JPEG stored sideways with EXIF orientation 6 (shown turned 90 degrees clockwise, so
    ``height`` x ``width`` upright), grey with a red square at stored (x, y, side). Returns the bytes and the
    square's box (x0, y0, x1, y1) in the upright image, where Label Studio and browsers place regions."""
    x, y, side = square
    pixels = np.full((height, width, 3), 128, dtype=np.uint8)
    pixels[y : y + side, x : x + side] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95, exif=exif)
    # Orientation 6: stored (x, y) is shown at (height - 1 - y, x).
    return buffer.getvalue(), (height - y - side, x, height - y, x + side)


def png(width: int, height: int, seed: int = 0) -> bytes:
    """A random RGB PNG of the given size."""
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def predictions_per_task(label_studio, project: int) -> Counter:
    """How many predictions each task of ``project`` holds in Label Studio."""
    return Counter(p["task"] for p in label_studio.api("GET", "/api/predictions", params={"project": project}))


def detections(width, height, boxes, labels, masks=None, scores=None) -> DetectionResult:
    """A hand-made pipeline result: boxes (xyxy pixels) with labels (None: unmapped), scores 0.5, 0.6, ..."""
    n = len(boxes)
    return DetectionResult(
        width=width,
        height=height,
        xyxy=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        scores=np.array(scores or [0.5 + 0.1 * i for i in range(n)], dtype=np.float32),
        phrases=[str(label) for label in labels],
        prompt_phrases=[str(label).lower() for label in labels],
        labels=list(labels),
        masks=masks,
        model_version="gdino-tiny+sam_tiny_test+box0.3-text0.25",
    )


def rectangle_result(box, label: str, size: int = 160) -> dict:
    """A ``label`` rectangle result on a ``size`` x ``size`` image, from a pixel box (what an annotator's box is)."""
    x0, y0, x1, y1 = (float(v) / size * 100 for v in box)
    return {
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": size,
        "original_height": size,
        "value": {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0, "rotation": 0, "rectanglelabels": [label]},
    }


def blob_masks(width, height, boxes) -> np.ndarray:
    """An elliptic blob inside each box."""
    yy, xx = np.mgrid[:height, :width]
    masks = []
    for x0, y0, x1, y1 in boxes:
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, max((x1 - x0) / 2, 1), max((y1 - y0) / 2, 1)
        masks.append(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1)
    return np.array(masks)


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory) -> Iterator[LabelStudioServer]:
    """One real Label Studio for the whole session (see the module docstring)."""
    cache = os.environ.get("GROUNDLABEL_TEST_CACHE")
    with running_label_studio(
        os.environ, tmp_path_factory.mktemp("label-studio"), Path(cache) if cache else None
    ) as server:
        yield server


@pytest.fixture
def ls_client(label_studio):
    from sync import LabelStudioClient

    with LabelStudioClient(label_studio.url, label_studio.token) as client:
        yield client


@pytest.fixture
def ls_project(label_studio) -> int:
    return label_studio.create_project()
