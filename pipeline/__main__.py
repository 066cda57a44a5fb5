"""Command line: ``python -m pipeline IMAGE [IMAGE ...] --prompt "dog. possum"`` -> annotated PNG + JSON per image."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm.auto import tqdm

from .engine import DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD
from .errors import GroundlabelError
from .images import load_image
from .labels import LabelMap
from .loader import LazyPipeline, PipelineSettings
from .render import render
from .weights import SEGMENTERS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--prompt", required=True, help='phrases separated by "." or ",", e.g. "brown dog:dog. possum"')
    parser.add_argument("--labels", help="comma-separated target labels; phrases that map to none are reported")
    parser.add_argument("--masks", metavar="SEGMENTER", help=f"add masks with one of: {', '.join(SEGMENTERS)}")
    parser.add_argument("--box-threshold", type=float, default=DEFAULT_BOX_THRESHOLD)
    parser.add_argument("--text-threshold", type=float, default=DEFAULT_TEXT_THRESHOLD)
    parser.add_argument("--detector", help="Hub id or local directory (default: $GROUNDLABEL_DETECTOR or grounding-dino-tiny)")
    parser.add_argument("--checkpoint", help="segmenter checkpoint file (default: $GROUNDLABEL_<NAME>_CHECKPOINT or cache)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when available)")
    parser.add_argument("--out", type=Path, default=Path("."), help="output directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = PipelineSettings.from_env()
    checkpoints = {args.masks: args.checkpoint} if args.checkpoint and args.masks else {}
    settings = PipelineSettings(detector=args.detector or env.detector, device=args.device or env.device,
                                dtype=env.dtype, input_size=env.input_size, checkpoints=checkpoints)
    labels = [label.strip() for label in args.labels.split(",") if label.strip()] if args.labels else None
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    try:
        pipeline = LazyPipeline(settings).get()
        prompt = pipeline.check_prompt(args.prompt)  # a prompt the detector cannot read fails once, not per image
        for path in tqdm(args.images, desc="images", unit="img", disable=len(args.images) < 2):
            try:
                image = load_image(path)
                result = pipeline(image, prompt, args.box_threshold, args.text_threshold,
                                  segmenter=args.masks, label_map=LabelMap(labels))
            except (GroundlabelError, OSError) as error:
                tqdm.write(f"{path}: {error}", file=sys.stderr)  # above the progress bar, on a line of its own
                failed += 1
                continue
            render(image, result).save(args.out / f"{path.stem}.groundlabel.png")
            (args.out / f"{path.stem}.groundlabel.json").write_text(json.dumps(result.to_dict(), indent=2))
            unmapped = f"; unmapped phrases: {', '.join(result.unmapped)}" if result.unmapped and labels else ""
            tqdm.write(f"{path}: {len(result)} detections -> {args.out / path.stem}.groundlabel.png/.json{unmapped}")
    except GroundlabelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
