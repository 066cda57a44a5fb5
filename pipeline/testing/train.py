"""Train and evaluate the shapes models (``pipeline.testing.shapes``) on CPU.

    python -m pipeline.testing train-shapes OUT/ [--minutes N] [--steps N] [--seed S] [--only detector|sam]
    python -m pipeline.testing eval-shapes DIR [--scenes 200]

The detector's data is generated here; its loss, optimiser, schedule and step loop are ``pipeline.training``'s,
the same code path ``python -m sync.finetune`` trains a project's detector with. The product is used to *evaluate*,
through ``GroundingPipeline`` (detector) and ``segment_anything.SamPredictor`` (SAM), exactly as users load weights.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import training
from . import shapes as S

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)

DETECTOR_CONFIG = dict(
    swin_embed_dim=16,
    swin_depths=[1, 1, 2, 1],
    swin_heads=[1, 2, 2, 4],
    d_model=64,
    num_queries=12,
    encoder_layers=2,
    decoder_layers=3,
    ffn_dim=128,
    heads=4,
    text_hidden=64,
    text_layers=1,
    max_text_len=64,
    text_gain=0.15,
)
DETECTOR_TRAIN = dict(batch=8, lr=6e-4, warmup=300, weight_decay=1e-4, clip=1.0, steps=3000)
SAM_TRAIN = dict(batch=8, lr=2e-3, warmup=200, weight_decay=1e-4, clip=1.0, steps=3000)
TRAINING = {"threads": 2, "device": "cpu"}  # set by main() from --threads / --device


def _threads() -> None:
    torch.set_num_threads(TRAINING["threads"])


# --- detector -----------------------------------------------------------------------------------------------------


def build_detector(seed: int = 0, config: dict | None = None):
    import tempfile

    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    c = {**DETECTOR_CONFIG, **(config or {})}
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = BertTokenizer(vocab=str(S.write_shapes_vocab(Path(tmp) / "vocab.txt")), do_lower_case=True)
    torch.manual_seed(seed)
    swin = SwinConfig(
        embed_dim=c["swin_embed_dim"], depths=c["swin_depths"], num_heads=c["swin_heads"], out_indices=[2, 3, 4]
    )
    bert = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=c["text_hidden"],
        num_hidden_layers=c["text_layers"],
        num_attention_heads=2,
        intermediate_size=2 * c["text_hidden"],
        max_position_embeddings=128,
    )
    config = GroundingDinoConfig(
        backbone_config=swin,
        text_config=bert,
        d_model=c["d_model"],
        num_queries=c["num_queries"],
        encoder_layers=c["encoder_layers"],
        decoder_layers=c["decoder_layers"],
        encoder_ffn_dim=c["ffn_dim"],
        decoder_ffn_dim=c["ffn_dim"],
        encoder_attention_heads=c["heads"],
        decoder_attention_heads=c["heads"],
        max_text_len=c["max_text_len"],
        auxiliary_loss=True,
    )
    model = GroundingDinoForObjectDetection(config)
    with torch.no_grad():  # start with small text features: query . token logits near 0 instead of +-30 (saturated)
        model.model.encoder.layers[-1].text_enhancer_layer.layer_norm_after.weight.fill_(c.get("text_gain", 1.0))
    size = {"shortest_edge": S.SHAPES_INPUT_SIZE, "longest_edge": S.SHAPES_INPUT_SIZE * 1333 // 800}
    processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(size=size), tokenizer=tokenizer)
    return model, processor


def _cxcywh(xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    x1, y1, x2, y2 = xyxy.T
    return np.stack([(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height], -1)


# Scene sizes the detector can train on (``--aspects``), one per batch: what the processor (short side 160, long
# side at most 266) makes of square, 4:3, 3:4, 16:9 and 9:16 pictures. The committed detector saw square scenes only
# and learned a shortcut: a box as wide as it is tall in normalised coordinates, right on a square scene and squashed
# by the aspect ratio on any other (docs/toy-models.md: mixed-aspect fine-tunes so far only narrowed it).
ASPECT_SIZES: dict[str, tuple[int, int]] = {
    "square": S.SHAPES_SCENE_SIZE,
    "4:3": (213, 160),
    "3:4": (160, 213),
    "16:9": (266, 150),
    "9:16": (150, 266),
}


# eval-shapes' scene sizes: the fixed square evaluation, the demo's 320x240, and 3:4, 16:9, 9:16 at that scale.
EVAL_SIZES = (S.SHAPES_SCENE_SIZE, (320, 240), (240, 320), (320, 180), (180, 320))


def detector_batch(rng: np.random.Generator, tokenizer, batch: int, size=S.SHAPES_SCENE_SIZE):
    """``batch`` scenes of one ``size`` (W, H), normalised as the processor does, with their prompts and targets
    (boxes normalised by the scene's own width and height, as the model predicts them)."""
    images, texts, labels = [], [], []
    for _ in range(batch):
        image, shapes = S.make_scene(rng, size)
        prompt = S.make_prompt(rng, shapes)
        images.append((np.asarray(image, np.float32) / 255 - _MEAN) / _STD)
        texts.append(prompt.text)
        keep = [i for i, t in enumerate(prompt.targets) if t >= 0]
        boxes = _cxcywh(np.stack([shapes[i].xyxy for i in keep]), *size) if keep else np.zeros((0, 4), np.float32)
        labels.append(
            {
                "class_labels": torch.tensor([prompt.targets[i] for i in keep], dtype=torch.long),
                "boxes": torch.tensor(boxes, dtype=torch.float32),
            }
        )
    text = tokenizer(texts, padding=True, return_tensors="pt")
    pixel_values = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return dict(
        pixel_values=pixel_values,
        pixel_mask=torch.ones(batch, size[1], size[0], dtype=torch.long),
        input_ids=text["input_ids"],
        attention_mask=text["attention_mask"],
        token_type_ids=text["token_type_ids"],
    ), labels


def _stop(name: str, step: int, elapsed: float, minutes: float | None, stop_after: int | None, log) -> bool:
    """Whether a training loop ends after ``step``: its time limit, or ``--stop-after`` (which repeats a time-limited
    run exactly)."""
    if minutes is not None and elapsed > minutes * 60:
        log(f"{name}: time limit reached at step {step}")
        return True
    if stop_after is not None and step + 1 >= stop_after:
        log(f"{name}: stopped after step {step} as asked")
        return True
    return False


def save_detector(model, processor, directory: Path) -> Path:
    training.save_detector(model, processor, directory)
    compact_json(directory)
    return directory


def compact_json(directory: Path) -> None:
    """Rewrite the saved JSON files without indentation (11 KB less: the committed models stay under 5 MB)."""
    for path in directory.glob("*.json"):
        path.write_text(json.dumps(json.loads(path.read_text()), separators=(",", ":"), ensure_ascii=False))


def _with_queries(model, queries: int):
    """The same model with ``queries`` decoder queries: the learned query contents tiled (plus a little noise, so
    the copies can part), everything else kept. Two-stage selection then keeps that many encoder proposals."""
    from transformers import GroundingDinoForObjectDetection

    config = model.config
    config.num_queries = queries
    grown = GroundingDinoForObjectDetection(config)
    state = model.state_dict()
    old = state["model.query_position_embeddings.weight"]
    tiled = old.repeat(math.ceil(queries / len(old)), 1)[:queries]
    state["model.query_position_embeddings.weight"] = tiled + 0.01 * torch.randn_like(tiled)
    grown.load_state_dict(state)
    return grown


def train_detector(
    out: Path,
    steps: int,
    seed: int,
    minutes: float | None,
    log=print,
    config=None,
    train=None,
    init: Path | None = None,
    stop_after: int | None = None,
    aspects: tuple[str, ...] = ("square",),
):
    """Train (or with ``init`` continue) the shapes detector; each batch's scene size is drawn from ``aspects``
    (names in ``ASPECT_SIZES``; with one name the scene stream is the one the square-only stages 1-6 saw)."""
    _threads()
    t = {**DETECTOR_TRAIN, **(train or {})}
    model, processor = build_detector(seed, config)
    if init:  # a second stage continues from a saved model at half the peak learning rate, on fresh scenes
        from transformers import GroundingDinoForObjectDetection

        model = GroundingDinoForObjectDetection.from_pretrained(init / S.SHAPES_DETECTOR_DIRNAME)
        if config and config.get("num_queries", model.config.num_queries) != model.config.num_queries:
            model = _with_queries(model, config["num_queries"])
        t["lr"], seed = t["lr"] / 2, seed + 100
        log(f"detector: continuing from {init}")
    device = torch.device(TRAINING["device"])
    log(
        f"detector: {sum(p.numel() for p in model.parameters()):,} params, {steps} steps, seed {seed}, "
        f"scenes {', '.join(aspects)}"
    )
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    optimizer, schedule = training.optimizer_for(model, t["lr"], t["weight_decay"], steps, t["warmup"])
    start, running = time.time(), None

    def batch_at(step: int) -> training.Batch:
        aspect = aspects[int(rng.integers(len(aspects)))] if len(aspects) > 1 else aspects[0]
        return detector_batch(rng, processor.tokenizer, t["batch"], ASPECT_SIZES[aspect])

    def after_step(step: int, value: float) -> bool:
        nonlocal running
        running = value if running is None else 0.98 * running + 0.02 * value
        elapsed = time.time() - start
        if step % 200 == 0 or step == steps - 1:
            log(f"detector step {step} loss {running:.3f} lr {schedule.get_last_lr()[0]:.2e} {elapsed / 60:.1f} min")
        if step % 500 == 499:  # a snapshot to look at while training goes on (overwritten at the end)
            save_detector(model, processor, out / S.SHAPES_DETECTOR_DIRNAME)
            model.train()
        return _stop("detector", step, elapsed, minutes, stop_after, log)

    done = training.train_steps(
        model, batch_at, optimizer, schedule, steps=steps, clip=t["clip"], device=device, after_step=after_step
    )
    target = save_detector(model.cpu().eval(), processor, out / S.SHAPES_DETECTOR_DIRNAME)
    return target, {"steps": done, "minutes": round((time.time() - start) / 60, 1)}


def eval_detector(
    directory: Path,
    scenes: int = 200,
    seed: int = 12345,
    box_threshold=S.SHAPES_BOX_THRESHOLD,
    text_threshold=S.SHAPES_TEXT_THRESHOLD,
    input_size=S.SHAPES_INPUT_SIZE,
    size: tuple[int, int] = S.SHAPES_SCENE_SIZE,
) -> dict:
    """Recall / precision at IoU 0.5 with the right prompt phrase on scenes of ``size`` (W, H), through the
    product's GroundingPipeline, and the right boxes' IoU with their shapes (median, 10th percentile): a box
    squashed by the scene's aspect ratio still counts as right at 0.5, so only these show it."""
    _threads()
    pipeline = S.load_shapes_pipeline(directory, input_size=input_size)
    rng = np.random.default_rng(seed)
    asked = found = 0
    right: list[float] = []
    bad_phrases = 0
    for _ in range(scenes):
        image, shapes = S.make_scene(rng, size)
        prompt = S.make_prompt(rng, shapes)
        result = S.run_pipeline(pipeline, image_bytes(image), prompt.text, box_threshold, text_threshold)
        right += S.right_box_ious(shapes, prompt, result.xyxy, result.prompt_phrases, result.scores)
        asked, found = asked + sum(t >= 0 for t in prompt.targets), found + len(result.xyxy)
        bad_phrases += sum(("[SEP]" in p or "[CLS]" in p or p.startswith("##")) for p in result.phrases)
    return {
        "recall": len(right) / max(asked, 1),
        "precision": len(right) / max(found, 1),
        "median_box_iou": float(np.median(right)) if right else 0.0,
        "p10_box_iou": float(np.percentile(right, 10)) if right else 0.0,
        "asked": asked,
        "found": found,
        "bad_phrases": bad_phrases,
        "scenes": scenes,
        "size": f"{size[0]}x{size[1]}",
    }


def image_bytes(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- SAM ----------------------------------------------------------------------------------------------------------


def _interior_points(rng, mask: np.ndarray, count: int, margin: int = 2) -> np.ndarray:
    inner = mask.copy()
    for _ in range(margin):
        inner[1:] &= inner[:-1]
        inner[:-1] &= inner[1:]
        inner[:, 1:] &= inner[:, :-1]
        inner[:, :-1] &= inner[:, 1:]
    ys, xs = np.nonzero(inner if inner.any() else mask)
    pick = rng.integers(len(xs), size=count)
    return np.stack([xs[pick], ys[pick]], -1).astype(np.float32)


def _sam_sample(rng, transform):
    """A scene at a random size, resized the way SamPredictor does, one shape, and its mask in the 256 frame."""
    long_side = int(rng.integers(128, 321))
    short_side = int(long_side * rng.uniform(0.6, 1.0))
    size = (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)
    image, shapes = S.make_scene(rng, size, min_size=0.12, max_size=0.45)
    array = transform.apply_image(np.asarray(image))
    h, w = array.shape[:2]
    return array, shapes, (image.height, image.width), (h, w)


def train_sam(
    out: Path,
    steps: int,
    seed: int,
    minutes: float | None,
    log=print,
    train=None,
    init: Path | None = None,
    stop_after: int | None = None,
):
    from segment_anything.utils.transforms import ResizeLongestSide

    _threads()
    t = {**SAM_TRAIN, **(train or {})}
    torch.manual_seed(seed)
    sam = S.build_shapes_sam(str(init / S.SHAPES_SAM_FILENAME) if init else None)
    sam.train()
    if init:  # a second stage continues from a saved model at half the peak learning rate, on fresh scenes
        t["lr"], seed = t["lr"] / 2, seed + 100
        log(f"sam: continuing from {init}")
    log(f"sam: {sum(p.numel() for p in sam.parameters()):,} params, {steps} steps, seed {seed}")
    rng = np.random.default_rng(seed + 1)
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    optimizer, schedule = training.optimizer_for(sam, t["lr"], t["weight_decay"], steps, t["warmup"])
    size = sam.image_encoder.img_size
    start, running, step = time.time(), None, 0
    for step in range(steps):
        batch, prompts = _sam_batch(rng, transform, t["batch"], size)
        value = training.optimise(_sam_loss(sam, batch, prompts, size), sam, optimizer, schedule, t["clip"])
        running = value if running is None else 0.98 * running + 0.02 * value
        elapsed = time.time() - start
        if step % 100 == 0 or step == steps - 1:
            log(f"sam step {step} loss {running:.4f} lr {schedule.get_last_lr()[0]:.2e} {elapsed / 60:.1f} min")
        if _stop("sam", step, elapsed, minutes, stop_after, log):
            break
    out.mkdir(parents=True, exist_ok=True)
    target = out / S.SHAPES_SAM_FILENAME
    torch.save({k: v.detach().clone() for k, v in sam.eval().state_dict().items()}, target)
    return target, {"steps": step + 1, "minutes": round((time.time() - start) / 60, 1)}


def _sam_batch(rng, transform, count: int, size: int) -> tuple[list, list]:
    """``count`` scenes resized for the SAM, each with one shape's (jittered box, 1-3 positive points and sometimes
    a negative one, full-size target mask)."""
    batch, prompts = [], []
    for _ in range(count):
        array, shapes, original, (h, w) = _sam_sample(rng, transform)
        while not shapes:
            array, shapes, original, (h, w) = _sam_sample(rng, transform)
        shape = shapes[int(rng.integers(len(shapes)))]
        scale = h / original[0]
        mask = np.asarray(Image.fromarray(shape.mask).resize((w, h), Image.NEAREST))
        full = np.zeros((size, size), np.float32)
        full[:h, :w] = mask
        box = shape.xyxy * scale
        jitter = rng.normal(0, 0.04, 4) * np.array([box[2] - box[0], box[3] - box[1]] * 2)
        box = (box + jitter * (rng.random() < 0.8)).astype(np.float32)
        positives = _interior_points(rng, mask, int(rng.integers(1, 4)))
        points, point_labels = positives, np.ones(len(positives), np.float32)
        if rng.random() < 0.3:
            others = ~mask
            ys, xs = np.nonzero(others)
            k = int(rng.integers(len(xs)))
            points = np.concatenate([points, [[xs[k], ys[k]]]]).astype(np.float32)
            point_labels = np.concatenate([point_labels, [0.0]]).astype(np.float32)
        batch.append(torch.from_numpy(array).permute(2, 0, 1).float())
        prompts.append(
            (torch.from_numpy(box), torch.from_numpy(points), torch.from_numpy(point_labels), torch.from_numpy(full))
        )
    return batch, prompts


def _sam_loss(sam, batch: list, prompts: list, size: int) -> torch.Tensor:
    """BCE x5 + dice on the full-size mask, and the IoU head's error, for the box and for the points of each."""
    pixels = torch.stack([sam.preprocess(x) for x in batch])
    embeddings = sam.image_encoder(pixels)
    pe = sam.prompt_encoder.get_dense_pe()
    losses = []
    for b, (box, points, point_labels, full) in enumerate(prompts):
        for kind in ("box", "points"):
            if kind == "box":
                sparse, dense = sam.prompt_encoder(points=None, boxes=box[None], masks=None)
            else:
                sparse, dense = sam.prompt_encoder(points=(points[None], point_labels[None]), boxes=None, masks=None)
            low, iou_pred = sam.mask_decoder(
                image_embeddings=embeddings[b : b + 1],
                image_pe=pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            logits = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)[0, 0]
            bce = F.binary_cross_entropy_with_logits(logits, full)
            prob = logits.sigmoid()
            dice = 1 - (2 * (prob * full).sum() + 1) / (prob.sum() + full.sum() + 1)
            with torch.no_grad():
                hard = logits > 0
                true_iou = (hard & (full > 0)).sum() / ((hard | (full > 0)).sum().clamp(min=1))
            losses.append(bce * 5 + dice + 0.1 * (iou_pred[0, 0] - true_iou) ** 2)
    return torch.stack(losses).mean()


def eval_sam(checkpoint: Path, scenes: int = 200, seed: int = 54321, size=S.SHAPES_SCENE_SIZE) -> dict:
    """Mean mask IoU through SamPredictor for a box prompt (the shape's box) and for one positive point
    (a random pixel >= 2 px inside the shape), one shape per scene in turn."""
    from segment_anything import SamPredictor

    _threads()
    S.register_shapes_sam()
    import segment_anything

    sam = segment_anything.sam_model_registry[S.SHAPES_SAM_MODEL_TYPE](checkpoint=str(checkpoint))
    predictor = SamPredictor(sam.eval())
    rng = np.random.default_rng(seed)
    box_ious, point_ious = [], []
    done = 0
    while done < scenes:
        image, shapes = S.make_scene(rng, size)
        if not shapes:
            continue
        done += 1
        predictor.set_image(np.asarray(image))
        for shape in shapes:
            masks, _, _ = predictor.predict(box=shape.xyxy, multimask_output=False)
            box_ious.append(S.mask_iou(masks[0], shape.mask))
            point = _interior_points(rng, shape.mask, 1)
            masks, _, _ = predictor.predict(point_coords=point, point_labels=np.ones(1), multimask_output=False)
            point_ious.append(S.mask_iou(masks[0], shape.mask))
    return {
        "mask_iou_box": float(np.mean(box_ious)),
        "mask_iou_point": float(np.mean(point_ious)),
        "masks": len(box_ious),
        "scenes": scenes,
    }


# --- CLI ----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``train-shapes OUT [--minutes N] [--steps N] [--sam-steps N] [--seed S] [--only detector|sam]`` and
    ``eval-shapes DIR [--scenes N]`` (DIR holds gdino-shapes/ and/or sam_shapes.pth)."""
    args = _parser().parse_args(argv)
    if args.command == "train-shapes":
        return _train_shapes(args)
    print(json.dumps(_evaluate(args.dir, args.scenes, _parse_sizes(args.sizes)), indent=1))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.testing")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train_arguments(commands.add_parser("train-shapes", help="train the shapes detector and SAM into OUT/"))
    evaluate = commands.add_parser("eval-shapes", help="measure the shapes models in DIR")
    evaluate.add_argument("dir", type=Path)
    evaluate.add_argument("--scenes", type=int, default=200)
    evaluate.add_argument(
        "--sizes",
        default=_sizes_text(EVAL_SIZES),
        help="detector scene sizes WxH, comma-separated, each evaluated on its own (default: square and the demo's "
        "320x240 with its turned and wide kin)",
    )
    return parser


def _add_train_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument("out", type=Path)
    train.add_argument("--steps", type=int, default=DETECTOR_TRAIN["steps"], help="detector steps (schedule length)")
    train.add_argument("--sam-steps", type=int, default=SAM_TRAIN["steps"])
    train.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="stop each model's training after this many minutes even if steps remain",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="end after this many steps of the --steps schedule (what a --minutes cap did, exactly)",
    )
    train.add_argument("--lr", type=float, default=None, help="detector peak learning rate")
    train.add_argument(
        "--batch", type=int, default=None, help=f"detector scenes per step (default {DETECTOR_TRAIN['batch']})"
    )
    train.add_argument(
        "--queries",
        type=int,
        default=None,
        help=f"detector queries (default {DETECTOR_CONFIG['num_queries']}; with --init, the saved model's are tiled)",
    )
    train.add_argument(
        "--aspects",
        default="square",
        help=f"detector scene shapes, one drawn per batch, from {', '.join(ASPECT_SIZES)} (default square, as "
        "the committed detector was trained)",
    )
    train.add_argument("--only", choices=("detector", "sam"), default=None)
    train.add_argument("--no-eval", action="store_true")
    train.add_argument("--threads", type=int, default=2, help="torch threads (1 is faster on a shared 2-core machine)")
    train.add_argument("--device", default="cpu", help="cpu or cuda (measured: no faster for these tiny models)")
    train.add_argument(
        "--init",
        type=Path,
        default=None,
        help="continue from the models in this directory (a second stage, half the peak lr)",
    )


def _train_shapes(args: argparse.Namespace) -> int:
    """The train-shapes command: train what ``--only`` names into OUT/ (log in OUT/train-log.txt), then evaluate."""
    TRAINING.update(threads=args.threads, device=args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    logfile = (args.out / "train-log.txt").open("a")

    def log(message: str) -> None:
        print(message, flush=True)
        logfile.write(message + "\n")
        logfile.flush()

    report = {"seed": args.seed}
    if args.only in (None, "detector"):
        _, report["detector_training"] = train_detector(
            args.out,
            args.steps,
            args.seed,
            args.minutes,
            log,
            init=args.init,
            stop_after=args.stop_after,
            train={k: v for k, v in (("lr", args.lr), ("batch", args.batch)) if v},
            config={"num_queries": args.queries} if args.queries else None,
            aspects=_aspects(args.aspects),
        )
    if args.only in (None, "sam"):
        _, report["sam_training"] = train_sam(
            args.out, args.sam_steps, args.seed, args.minutes, log, init=args.init, stop_after=args.stop_after
        )
    if not args.no_eval:
        report.update(_evaluate(args.out, 200, EVAL_SIZES))
    log(json.dumps(report))
    return 0


def _aspects(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in ASPECT_SIZES]
    if unknown or not names:
        raise SystemExit(
            f"--aspects: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(ASPECT_SIZES)}"
        )
    return names


def _sizes_text(sizes) -> str:
    return ",".join(f"{w}x{h}" for w, h in sizes)


def _parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    try:
        sizes = tuple(tuple(int(n) for n in item.lower().split("x")) for item in text.split(",") if item.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(len(size) != 2 or min(size) < 32 for size in sizes):
        raise SystemExit(f"--sizes: expected WxH[,WxH...] of at least 32 px, got {text!r}")
    return sizes


def _evaluate(directory: Path, scenes: int, sizes=EVAL_SIZES) -> dict:
    """Detector figures per scene size (keyed 'WxH') and SAM figures, for whichever models ``directory`` holds."""
    report = {}
    if (directory / S.SHAPES_DETECTOR_DIRNAME).is_dir():
        report["detector"] = {
            _sizes_text([size]): eval_detector(directory / S.SHAPES_DETECTOR_DIRNAME, scenes, size=size)
            for size in sizes
        }
    if (directory / S.SHAPES_SAM_FILENAME).is_file():
        report["sam"] = eval_sam(directory / S.SHAPES_SAM_FILENAME, scenes)
    return report


if __name__ == "__main__":
    sys.exit(main())
