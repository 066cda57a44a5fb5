"""Bulk writes of predictions sized by bytes, against a real Label Studio: big results are split over several
requests (none past the limit unless one result alone is), small ones go many to a request, and every prediction
lands once."""

from __future__ import annotations

import json
from collections import Counter

from sync import LabelStudioResult, Outbox, Pusher
from sync.push import PredictionWriter
from tests.labelstudio import predictions_per_task

CONFIG = """<View><Image name="image" value="$image"/>
  <BrushLabels name="mask" toName="image"><Label value="cats"/></BrushLabels></View>"""
LIMIT = 1 << 20  # bytes of JSON per request in this test


def brush(seed: int, length: int) -> LabelStudioResult:
    """A prediction whose mask's run lengths take about ``4 * length`` bytes of JSON."""
    region = {
        "id": f"m{seed}",
        "from_name": "mask",
        "to_name": "image",
        "type": "brushlabels",
        "original_width": 64,
        "original_height": 48,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": [(seed + i) % 256 for i in range(length)], "brushlabels": ["cats"]},
    }
    return LabelStudioResult([region], 0.5, "groundlabel-test")


def test_big_results_are_split_over_requests_by_bytes_and_small_ones_go_together(label_studio, ls_client, tmp_path):
    project = label_studio.create_project(CONFIG, title="write batches")
    tasks = label_studio.import_tasks(project, [{"image": f"/data/upload/1/{i}.png"} for i in range(24)])
    sent: list[tuple[int, int]] = []  # (predictions, bytes of JSON) per bulk request
    bulk = ls_client.import_predictions

    def recorded(project_id: int, predictions: list[dict]) -> dict:
        sent.append((len(predictions), len(json.dumps(predictions))))
        return bulk(project_id, predictions)

    ls_client.import_predictions = recorded
    writer = PredictionWriter(ls_client, project, Pusher(ls_client, Outbox(tmp_path)), LIMIT)
    big = {task: brush(i, 100_000) for i, task in enumerate(tasks[:4])}  # ~0.4 MB each: two to a request
    huge = {tasks[4]: brush(4, 400_000)}  # ~1.6 MB: past the limit alone
    small = {task: brush(i, 10) for i, task in enumerate(tasks[5:], start=5)}  # ~0.3 KB each
    refused = {}
    for task, result in (big | huge | small).items():
        refused |= writer.add(task, result)
    refused |= writer.flush()

    assert refused == {} and writer.queued == 0
    assert [count for count, _ in sent] == [2, 2, 1, len(small)]
    assert all(size <= LIMIT for count, size in sent if count > 1) and sent[2][1] > LIMIT
    assert writer.requests == len(sent)
    assert predictions_per_task(label_studio, project) == Counter({task: 1 for task in tasks})
    stored = label_studio.api("GET", "/api/predictions", params={"task": tasks[0]})[0]
    assert stored["result"][0]["value"]["rle"] == big[tasks[0]].result[0]["value"]["rle"]


def test_at_most_max_count_predictions_wait_unwritten(label_studio, ls_client, tmp_path):
    project = label_studio.create_project(CONFIG, title="write count")
    tasks = label_studio.import_tasks(project, [{"image": f"/data/upload/1/{i}.png"} for i in range(7)])
    writer = PredictionWriter(ls_client, project, Pusher(ls_client, Outbox(tmp_path)), LIMIT, max_count=3)
    held = []
    for i, task in enumerate(tasks):
        writer.add(task, brush(i, 10))
        held.append(len(writer.pending))
    writer.flush()

    assert held == [1, 2, 0, 1, 2, 0, 1] and writer.requests == 3
    assert predictions_per_task(label_studio, project) == Counter({task: 1 for task in tasks})
