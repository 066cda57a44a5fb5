"""Command line: ``python -m pipeline IMAGE|FOLDER ... --prompt "dog. possum"`` -> annotated PNG + JSON per image,
or, with ``--export coco|yolo|voc``, one dataset of all the images in that format."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from .console import quiet_known_warnings
from .engine import GroundingPipeline
from .errors import GroundlabelError
from .export import FORMATS, DatasetItem, export_dataset
from .images import LoadedImage, check_image_file, load_image
from .labels import LabelMap
from .options import DEFAULT_BOX_THRESHOLD, DEFAULT_NMS_THRESHOLD, DEFAULT_TEXT_THRESHOLD, Options
from .registry import DETECTORS, SEGMENTERS
from .render import render
from .results import DetectionResult
from .settings import PipelineSettings

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
EXIT_CODES = """exit codes:
  0  every image was labeled and written
  1  some inputs are not usable images (missing, not an image, too large, a folder with none): one line each,
     the others were labeled and written; with no usable input none is, and no model loads
  2  nothing was run: a setting, the prompt or the weights are wrong (one line says which), or a usage error"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description=__doc__,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", type=Path, help="image files, or folders of them")
    parser.add_argument(
        "--prompt", required=True, help='phrases separated by "." or ",", e.g. "brown dog:dog. possum@0.5"'
    )
    parser.add_argument("--labels", help="comma-separated target labels; phrases that map to none are reported")
    parser.add_argument("--masks", metavar="SEGMENTER", help=f"add masks with one of: {', '.join(SEGMENTERS)}")
    parser.add_argument("--box-threshold", type=float, default=DEFAULT_BOX_THRESHOLD)
    parser.add_argument("--text-threshold", type=float, default=DEFAULT_TEXT_THRESHOLD)
    parser.add_argument(
        "--label-threshold",
        action="append",
        metavar="LABEL=T",
        help="a label's own box threshold, e.g. cat=0.4 (repeat it, or cat=0.4,dog=0.5)",
    )
    parser.add_argument(
        "--nms-threshold",
        type=float,
        default=DEFAULT_NMS_THRESHOLD,
        help="IoU above which a box of the same label is dropped as a duplicate (1 keeps all)",
    )
    parser.add_argument(
        "--detector",
        help="registered name, Hub id or local directory (default: $GROUNDLABEL_DETECTOR or grounding-dino-tiny)",
    )
    parser.add_argument(
        "--checkpoint", help="segmenter checkpoint file (default: $GROUNDLABEL_<NAME>_CHECKPOINT or cache)"
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when available)")
    parser.add_argument("--out", type=Path, default=Path("."), help="output directory")
    parser.add_argument(
        "--export",
        choices=FORMATS,
        help="write one dataset in this format to --out instead of a PNG + JSON per image (classes: "
        "--labels, else the prompt's labels; masks as polygons)",
    )
    parser.add_argument("--models", action="store_true", help="list the registered detectors and segmenters, and exit")
    return parser.parse_args(argv)


def models_listing() -> str:
    """The registry as a table: the names --detector / --masks take, where the weights come from, the licence and
    the variable that names a local copy."""
    rows = [
        (
            "detector",
            spec.name,
            spec.source,
            spec.licence,
            f"{spec.env_var} (a directory); GROUNDLABEL_DETECTOR={spec.name} makes it the app's",
        )
        for spec in DETECTORS.values()
    ]
    rows += [
        (
            "segmenter",
            spec.name,
            spec.source,
            spec.licence,
            f"{spec.env_var} ({'a directory' if spec.hub else 'a file'})",
        )
        for spec in SEGMENTERS.values()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4] for row in rows)


def image_paths(paths: list[Path], max_pixels: int, failed: list[Path]) -> list[Path]:
    """The files given, with each folder replaced by the images in it (sorted), each checked from its header
    (no pixel decoded, no model needed); each unusable one, and each folder with none, is reported in one line and
    added to ``failed``."""
    found = []
    for path in paths:
        if not path.is_dir():
            found.append(path)
            continue
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            print(f"{path}: a folder with no images in it ({', '.join(IMAGE_SUFFIXES)})", file=sys.stderr)
            failed.append(path)
        found += images
    usable = []
    for path in found:
        try:
            check_image_file(path, max_pixels)
        except GroundlabelError as error:
            print(f"{path}: {error}", file=sys.stderr)
            failed.append(path)
        except OSError as error:
            print(f"{path}: {error.strerror or error}", file=sys.stderr)
            failed.append(path)
        else:
            usable.append(path)
    return usable


def main(argv: list[str] | None = None) -> int:
    quiet_known_warnings()
    if "--models" in (sys.argv[1:] if argv is None else argv):  # needs no image and no prompt
        print(models_listing())
        return 0
    args = parse_args(argv)
    labels = [label.strip() for label in args.labels.split(",") if label.strip()] if args.labels else None
    failed = []
    try:  # every setting and input is checked before a model loads: a typo costs one line, not a traceback
        options = Options(
            args.box_threshold,
            args.text_threshold,
            args.masks,
            nms_threshold=args.nms_threshold,
            label_thresholds=args.label_threshold,
        )
        env = PipelineSettings.from_env()
        checkpoints = (
            {**env.checkpoints, options.segmenter: args.checkpoint}
            if args.checkpoint and args.masks
            else env.checkpoints
        )
        settings = replace(
            env, detector=args.detector or env.detector, device=args.device or env.device, checkpoints=checkpoints
        )
        paths = image_paths(args.images, settings.max_pixels, failed)  # before any model loads
        if not paths:
            return 1
        if not args.export:  # a dataset's directory appears only once it is complete (pipeline.export)
            args.out.mkdir(parents=True, exist_ok=True)
        pipeline = GroundingPipeline.from_settings(settings)
        prompt = pipeline.check_prompt(args.prompt)  # a prompt the detector cannot read fails once, not per image
        label_map = LabelMap(labels)
        found = detect_all(pipeline, paths, prompt, options, label_map, failed)
        if args.export:
            classes = labels or list(
                dict.fromkeys(
                    label
                    for label in (label_map.label_for(phrase, prompt.explicit_labels) for phrase in prompt.phrases)
                    if label
                )
            )
            items = (DatasetItem(path.name, image, result, source=path) for path, image, result in found)
            count = export_dataset(items, classes, args.export, args.out)  # images leave memory once written
            print(f"{args.export} dataset of {count} images, classes {', '.join(classes)}: {args.out}")
        else:
            for path, image, result in found:
                render(image, result).save(args.out / f"{path.stem}.groundlabel.png")
                (args.out / f"{path.stem}.groundlabel.json").write_text(json.dumps(result.to_dict(), indent=2))
                tqdm.write(f"{path}: -> {args.out / path.stem}.groundlabel.png/.json")
    except GroundlabelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1 if failed else 0


def detect_all(
    pipeline: GroundingPipeline, paths: list[Path], prompt, options: Options, label_map: LabelMap, failed: list[Path]
) -> Iterator[tuple[Path, LoadedImage, DetectionResult]]:
    """(path, image, result) per readable image, one at a time; an unreadable one is reported, added to ``failed``
    and skipped."""
    for path in tqdm(paths, desc="images", unit="img", disable=len(paths) < 2):
        try:
            image = load_image(path, pipeline.settings.max_pixels)
            result = pipeline(image, prompt, options, label_map)
        except (GroundlabelError, OSError) as error:
            tqdm.write(f"{path}: {error}", file=sys.stderr)  # above the progress bar, on a line of its own
            failed.append(path)
            continue
        unmapped = f"; unmapped phrases: {', '.join(result.unmapped)}" if result.unmapped and label_map.labels else ""
        tqdm.write(f"{path}: {len(result)} detections{unmapped}")
        for note in result.notes:  # what was cut, e.g. masks past GROUNDLABEL_MAX_MASKS
            tqdm.write(f"{path}: {note}")
        yield path, image, result


if __name__ == "__main__":
    sys.exit(main())
