"""How fast a Label Studio stores predictions: the ceiling of any pre-annotation run, however many GPUs it has.

Starts a real Label Studio (1.23, as the tests do) on SQLite and on PostgreSQL (Debian's ``postgresql``: initdb in a
temporary directory, run as the ``postgres`` user, on 127.0.0.1; needs ``pip install psycopg2-binary``), imports
tasks, and writes predictions for fresh tasks through groundlabel's own bulk write
(``LabelStudioClient.import_predictions``, what ``sync.prelabel`` uses) at several request sizes: 10 rectangles per
prediction, and 10 rectangles + 10 brush masks (smooth 640x480 discs, RLE as label-studio-sdk encodes them).
Prints predictions/s per database and request size. Goal (why ``sync.prelabel`` writes in batches): 200 box
predictions per request store at least 10x as many per second as one per request, in the same run.

Run: ``python -m bench.labelstudio_writes [--db sqlite,postgresql] [--per-setting 400] [--check]``. Its tables
belong in docs/scaling.md; ``--update-docs docs/scaling.md`` writes them there once that file has their markers
(``<!-- bench:labelstudio_writes.sqlite -->`` ...).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from label_studio_sdk.converter.brush import mask2rle

from bench.common import Goal, Table, add_check_arguments, finish
from sync import LabelStudioClient
from sync.regions import BRUSH, RECTANGLE
from sync.testing import LabelStudioServer, free_port

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="box" toName="image"><Label value="dog"/><Label value="cat"/></RectangleLabels>
<BrushLabels name="mask" toName="image"><Label value="dog"/><Label value="cat"/></BrushLabels></View>"""
SETTINGS = [("boxes", 1), ("boxes", 10), ("boxes", 50), ("boxes", 200), ("boxes + masks", 10), ("boxes + masks", 50)]
BATCHED = Goal("vs 1 per request", ">=", 10, "x")  # judged on the 200-per-request row


def regions(with_masks: bool) -> list[dict]:
    """10 rectangles (and 10 brush masks) of a 640x480 image, as groundlabel's conversion writes them."""
    out = []
    yy, xx = np.mgrid[:480, :640]
    for i in range(10):
        common = {
            "to_name": "image",
            "original_width": 640,
            "original_height": 480,
            "image_rotation": 0,
            "score": 0.5 + i / 40,
        }
        out.append(
            {
                **common,
                "id": f"b{i}",
                "from_name": "box",
                "type": RECTANGLE.type,
                "value": {
                    "x": 5.0 * i,
                    "y": 4.0 * i,
                    "width": 20.0,
                    "height": 25.0,
                    "rotation": 0,
                    RECTANGLE.type: ["dog"],
                },
            }
        )
        if with_masks:
            disc = ((xx - 60 - 50 * i) ** 2 + (yy - 240) ** 2 < (40 + 3 * i) ** 2).astype(np.uint8) * 255
            out.append(
                {
                    **common,
                    "id": f"m{i}",
                    "from_name": "mask",
                    "type": BRUSH.type,
                    "value": {"format": "rle", "rle": mask2rle(disc), BRUSH.type: ["dog"]},
                }
            )
    return out


@contextlib.contextmanager
def postgresql(root: Path) -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (stopped and removed on exit); yields Label Studio's settings."""
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not binaries:
        raise SystemExit("PostgreSQL is not installed: apt-get install -y postgresql")
    data, port = root / "pgdata", free_port()
    root.chmod(0o755)
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_postgres, str(binaries[-1] / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_postgres,
            str(binaries[-1] / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(data / "log"),
            "-o",
            f"-p {port} -h 127.0.0.1 -k {data}",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield {
            "DJANGO_DB": "default",
            "POSTGRE_NAME": "postgres",
            "POSTGRE_USER": "postgres",
            "POSTGRE_PASSWORD": "",
            "POSTGRE_HOST": "127.0.0.1",
            "POSTGRE_PORT": str(port),
        }
    finally:
        subprocess.run(
            [*as_postgres, str(binaries[-1] / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True
        )


def measure(server: LabelStudioServer, per_setting: int, table: Table) -> None:
    """One row per setting in ``table``; the 200-box-predictions row judged against one per request."""
    project = server.create_project(CONFIG, title="write rate")
    needed = sum(min(per_setting, 200 * size) for _, size in SETTINGS)
    tasks = []
    for start in range(0, needed, 500):
        tasks += server.import_tasks(
            project, [{"image": f"/data/upload/x{i}.jpg"} for i in range(start, min(needed, start + 500))]
        )
    client = LabelStudioClient(server.url, server.token, timeout=120)
    fresh, rates = iter(tasks), {}
    for kind, size in SETTINGS:
        result = regions(kind != "boxes")
        count = min(per_setting, 200 * size)
        batches = [
            [{"task": next(fresh), "result": result, "score": 0.5, "model_version": "bench"} for _ in range(size)]
            for _ in range(count // size)
        ]
        request_bytes = len(json.dumps(batches[0]))
        start = time.perf_counter()
        for batch in batches:
            client.import_predictions(project, batch)
        seconds = time.perf_counter() - start
        rates[kind, size] = count / seconds
        table.add(
            kind,
            size,
            f"{request_bytes / 1024:.0f} KiB",
            f"{1000 * seconds / len(batches):.0f} ms",
            f"{count / seconds:.0f}",
            checks=[(BATCHED, rates[kind, size] / rates["boxes", 1])] if (kind, size) == ("boxes", 200) else [],
        )
    client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_check_arguments(parser)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--per-setting", type=int, default=400, help="predictions written per request size")
    args = parser.parse_args(argv)
    tables = []
    for db in args.db.split(","):
        with tempfile.TemporaryDirectory(prefix="groundlabel-writes-") as temp, contextlib.ExitStack() as stack:
            root = Path(temp)
            database = stack.enter_context(postgresql(root)) if db == "postgresql" else {"DJANGO_DB": "sqlite"}
            server = LabelStudioServer(root / "data", root / "files", dict(os.environ), database=database)
            started = time.perf_counter()
            server.start(timeout=600)
            stack.callback(server.stop)
            print(f"\n{db}: Label Studio up (migrations included) in {time.perf_counter() - started:.0f} s")
            table = Table(
                f"labelstudio_writes.{db}",
                f"Label Studio 1.23 prediction writes, {db}, one writer",
                (
                    "regions per prediction",
                    "predictions per request",
                    "request size",
                    "time per request",
                    "predictions/s",
                ),
            )
            measure(server, args.per_setting, table)
            tables.append(table)
    finish(args, *tables)


if __name__ == "__main__":
    main()
