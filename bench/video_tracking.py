"""Text prompt -> tracks on generated videos of moving shapes (two cross, one leaves, one enters;
``pipeline.testing.video_scenes``) through the committed toy detector, scored with motmetrics' CLEAR-MOT against
the drawn truth on every frame (tracks interpolated between sampled frames, as Label Studio shows keyframes).
Goals (issue 29): >= 0.9 of the truth's boxes matched (IoU >= 0.5) and <= 1 id switch per 100 frames. Frames/s is
the whole path (decode, detector, tracker) per decoded frame; ``--random tiny real`` adds rows for random-weight
Grounding DINO of the tests' and grounding-dino-tiny's shapes (speed only: their boxes mean nothing).

Run: ``python -m bench.video_tracking [--videos 4] [--frames 48] [--strides 1 3] [--random tiny] [--check]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import Goal, Table, add_check_arguments, finish, load_pipeline, real_models
from pipeline import Options
from pipeline.testing import shapes as S
from pipeline.testing.video_scenes import prompt_for, score_tracks, write_video
from pipeline.video import track_video

MATCHED = Goal("matched", ">=", 0.9)
SWITCHES = Goal("id switches / 100 frames", "<=", 1.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_check_arguments(parser)
    parser.add_argument("--videos", type=int, default=4, help="generated videos (seeds 0..N-1)")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--strides", type=int, nargs="*", default=[1, 3])
    parser.add_argument("--random", nargs="*", default=[], choices=["tiny", "real"], help="speed rows for these")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="groundlabel-video-"))
    paths = [folder / f"shapes-{seed}.mp4" for seed in range(args.videos)]
    videos = [(path, *write_video(path, seed, frames=args.frames)) for seed, path in enumerate(paths)]
    table = Table(
        "video_tracking",
        f"Tracks from a text prompt: {args.videos} generated 160x160 videos of {args.frames} frames, 4 moving shapes",
        ("detector", "stride", "matched", "id switches / 100 frames", "MOTA", "IDF1", "labels right", "frames/s"),
    )
    toy = S.load_shapes_pipeline()
    options = Options(S.SHAPES_BOX_THRESHOLD, S.SHAPES_TEXT_THRESHOLD)
    for stride in args.strides:
        scores, seconds = [], 0.0
        for path, shapes, truth in videos:
            start = time.perf_counter()
            tracks = track_video(toy, path, prompt_for(shapes), options, stride=stride)
            seconds += time.perf_counter() - start
            scores.append(score_tracks(tracks.tracks, truth, tracks.info.frames))
        boxes = sum(s.truth_boxes for s in scores)
        matched = sum(s.recall * s.truth_boxes for s in scores) / boxes
        switches = 100 * sum(s.switches for s in scores) / sum(s.frames for s in scores)
        table.add(
            "toy (shapes)",
            stride,
            f"{matched:.3f}",
            f"{switches:.2f}",
            f"{sum(s.mota * s.truth_boxes for s in scores) / boxes:.3f}",
            f"{sum(s.idf1 for s in scores) / len(scores):.3f}",
            f"{sum(s.labels_right for s in scores) / len(scores):.3f}",
            f"{len(videos) * args.frames / seconds:.1f}",
            checks=[(MATCHED, matched), (SWITCHES, switches)],
        )
    for shape in args.random:
        detector, _ = real_models(shape=shape)
        pipeline = load_pipeline(detector, {}, device="cpu", input_size=160)
        path, shapes, _ = videos[0]
        start = time.perf_counter()
        tracks = track_video(pipeline, path, "box. ball", Options(), stride=1)
        rate = tracks.info.frames / (time.perf_counter() - start)
        table.add(f"random {shape} Grounding DINO", 1, "-", "-", "-", "-", "-", f"{rate:.2f}")
    finish(args, table)


if __name__ == "__main__":
    main()
