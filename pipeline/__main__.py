"""Command line: ``python -m pipeline IMAGE [IMAGE ...] --prompt "dog. possum"`` -> annotated PNG + JSON per image."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from .engine import GroundingPipeline
from .errors import GroundlabelError
from .images import load_image
from .labels import LabelMap
from .options import DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD, Options
from .registry import SEGMENTERS
from .render import render
from .settings import PipelineSettings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--prompt", required=True, help='phrases separated by "." or ",", e.g. "brown dog:dog. possum"')
    parser.add_argument("--labels", help="comma-separated target labels; phrases that map to none are reported")
    parser.add_argument("--masks", metavar="SEGMENTER", help=f"add masks with one of: {', '.join(SEGMENTERS)}")
    parser.add_argument("--box-threshold", type=float, default=DEFAULT_BOX_THRESHOLD)
    parser.add_argument("--text-threshold", type=float, default=DEFAULT_TEXT_THRESHOLD)
    parser.add_argument("--detector", help="registered name, Hub id or local directory "
                                           "(default: $GROUNDLABEL_DETECTOR or grounding-dino-tiny)")
    parser.add_argument("--checkpoint",
                        help="segmenter checkpoint file (default: $GROUNDLABEL_<NAME>_CHECKPOINT or cache)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when available)")
    parser.add_argument("--out", type=Path, default=Path("."), help="output directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    labels = [label.strip() for label in args.labels.split(",") if label.strip()] if args.labels else None
    failed = 0
    try:  # every setting is checked before a model loads: a typo costs one line, not a traceback
        options = Options(args.box_threshold, args.text_threshold, args.masks)
        env = PipelineSettings.from_env()
        checkpoints = {**env.checkpoints, options.segmenter: args.checkpoint} if args.checkpoint and args.masks \
            else env.checkpoints
        settings = replace(env, detector=args.detector or env.detector, device=args.device or env.device,
                           checkpoints=checkpoints)
        args.out.mkdir(parents=True, exist_ok=True)
        pipeline = GroundingPipeline.from_settings(settings)
        prompt = pipeline.check_prompt(args.prompt)  # a prompt the detector cannot read fails once, not per image
        for path in tqdm(args.images, desc="images", unit="img", disable=len(args.images) < 2):
            try:
                image = load_image(path, settings.max_pixels)
                result = pipeline(image, prompt, options, LabelMap(labels))
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
