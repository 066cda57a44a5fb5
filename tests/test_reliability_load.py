"""Load on the ML backend: 16 concurrent /predict requests on 16 different images each get their own image's
boxes and masks (compared with a sequential run), the caches stay inside their limits, and /health answers
within Label Studio's 1 s timeout throughout, even when every worker thread is busy (48 slow requests)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from pipeline import GroundingDinoDetector, GroundingPipeline, LazyPipeline, SegmenterPool
from pipeline.testing.models import TEST_INPUT_SIZE
from sync import BackendSettings
from tests.hostile import Answer, web_host
from tests.labelstudio import (
    BOX,
    GROUNDING_DINO_CONFIG,
    SEGMENTER,
    TEXT,
    backend_app,
    expected,
    png,
    prompt_context,
    serve,
)

REQUESTS = 16
PROMPTS = ["cats", "house", "cats. house"]
IMAGES = {f"/img{i}.png": png(40 + 3 * i, 32 + 2 * i, seed=200 + i) for i in range(REQUESTS)}  # all sizes differ
DETECTOR_CACHE_ITEMS, EMBEDDINGS_KEPT, MASK_CACHE_BYTES = 4, 3, 16 << 10
LOAD_BOX = 0.9999  # 1-5 boxes per image from the tiny detector: every image gets masks, the run stays short


@pytest.fixture
def small_cache_pipeline(model_paths) -> GroundingPipeline:
    """The tiny models with caches far smaller than the load, so that entries are evicted while requests run."""
    detector_dir, checkpoint = model_paths
    detector = GroundingDinoDetector(
        str(detector_dir), device="cpu", input_size=TEST_INPUT_SIZE, cache_items=DETECTOR_CACHE_ITEMS
    )
    pipeline = GroundingPipeline(detector, SegmenterPool("cpu", {SEGMENTER: str(checkpoint)}))
    segmenter = pipeline.segmenters.get(SEGMENTER)
    embedding = 4 * 256 * 64 * 64  # SAM's image embedding: 256 x 64 x 64 float32, whatever the encoder's width
    segmenter._embeddings.max_bytes = EMBEDDINGS_KEPT * embedding
    segmenter._masks.max_bytes = MASK_CACHE_BYTES
    return pipeline


@pytest.fixture(scope="module")
def images():
    with web_host(
        {path: Answer(data) for path, data in IMAGES.items()} | {"/slow-missing.png": Answer(status=404, delay=1.5)}
    ) as host:
        yield host


class HealthProbe:
    """Asks /health every 50 ms in a thread (with Label Studio's 1 s timeout) and keeps each answer's latency."""

    def __init__(self, url: str):
        self.url = url
        self.latencies: list[tuple[float, float]] = []  # (asked at, seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(timeout=1) as client:
            while not self._stop.is_set():
                asked = time.monotonic()
                try:
                    client.get(f"{self.url}/health").raise_for_status()
                    self.latencies.append((asked, time.monotonic() - asked))
                except httpx.HTTPError:
                    self.latencies.append((asked, float("inf")))
                self._stop.wait(0.05)


def predict(url: str, image_url: str, prompt: str | None, task_id: int, timeout: float = 120) -> dict:
    context = prompt_context(prompt) if prompt else None
    answer = httpx.post(
        f"{url}/predict",
        timeout=timeout,
        json={
            "tasks": [{"id": task_id, "data": {"image": image_url}}],
            "project": "1.1",
            "label_config": GROUNDING_DINO_CONFIG,
            "params": {"context": context},
        },
    )
    answer.raise_for_status()
    return answer.json()["results"][0]


def test_concurrent_predictions_are_each_the_images_own_and_caches_stay_bounded(
    small_cache_pipeline, pipeline, label_studio, images, tmp_path
):
    settings = BackendSettings(
        label_studio_url=label_studio.url,
        label_studio_token=label_studio.token,
        box_threshold=LOAD_BOX,
        text_threshold=TEXT,
        segmenter=SEGMENTER,
        state_dir=tmp_path,
    )
    jobs = [(images(path), PROMPTS[i % len(PROMPTS)], i) for i, path in enumerate(IMAGES)]

    with serve(backend_app(LazyPipeline(pipeline=small_cache_pipeline), settings)) as url, HealthProbe(url) as probe:
        started = time.monotonic()
        with ThreadPoolExecutor(REQUESTS) as pool:
            answers = list(pool.map(lambda job: predict(url, *job), jobs))
        finished = time.monotonic()

    for path, (_, prompt, _), answer in zip(IMAGES, jobs, answers):
        result, conversion = expected(pipeline, IMAGES[path], prompt, box=LOAD_BOX)  # alone, one after the other
        assert len(result) > 0 and answer["result"] == conversion.result, path
    during = [seconds for asked, seconds in probe.latencies if started <= asked <= finished]
    assert len(during) >= 10 and max(during) < 1.0, during
    detector, segmenter = small_cache_pipeline.detector, small_cache_pipeline.segmenters.get(SEGMENTER)
    assert len(detector._raw_cache) == DETECTOR_CACHE_ITEMS
    embeddings = segmenter._embeddings
    assert len(embeddings) == EMBEDDINGS_KEPT and embeddings.nbytes <= embeddings.max_bytes
    assert 0 < segmenter._masks.nbytes <= MASK_CACHE_BYTES
    print(
        f"{REQUESTS} concurrent requests in {finished - started:.1f} s; /health max "
        f"{max(during) * 1000:.0f} ms over {len(during)} probes"
    )


def test_health_answers_while_every_worker_thread_waits_on_a_slow_image_host(pipeline, label_studio, images, tmp_path):
    settings = BackendSettings(
        label_studio_url=label_studio.url,
        label_studio_token=label_studio.token,
        box_threshold=BOX,
        text_threshold=TEXT,
        segmenter=SEGMENTER,
        state_dir=tmp_path,
    )
    slow = 48  # more than the 40 worker threads Starlette runs sync work in

    with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url, HealthProbe(url) as probe:
        started = time.monotonic()
        with ThreadPoolExecutor(slow) as pool:
            answers = list(
                pool.map(lambda i: predict(url, images("/slow-missing.png"), "cats", 1000 + i, 30), range(slow))
            )
        finished = time.monotonic()

    assert all(answer["result"] == [] for answer in answers)
    during = [seconds for asked, seconds in probe.latencies if started <= asked <= finished]
    assert len(during) >= 10 and max(during) < 1.0, during
