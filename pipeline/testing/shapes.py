"""A small world of coloured shapes, and tiny models that learned it (``pipeline/testing/weights/``).

Random-weight models (``pipeline.testing.models``) exercise the code paths but can never tell whether the right box
got the right label. The shapes world can: ``make_scene`` draws red/green/blue/yellow squares, circles and triangles
on noisy or gradient backgrounds and returns the ground truth (kind, colour, box, mask); ``make_prompt`` writes a
prompt for it with synonyms ("box", "ball", "pyramid") and distractor phrases for shapes that are absent.

The committed models were trained by ``python -m pipeline.testing train-shapes OUT/`` (``pipeline.testing.train``);
see docs/toy-models.md for the recipe and the measured figures (the detector: recall 93.6 % and precision 87.9 % at
IoU 0.5 with the right phrase, just short of its 95 / 90 % target; the SAM: 0.93 mask IoU from a box, 0.82 from one
point). Load them through the product's own loaders::

    from pipeline.testing.shapes import *
    pipeline = load_shapes_pipeline()  # GroundingPipeline on CPU, SHAPES_INPUT_SIZE, 'sam_shapes' registered
    result = run_pipeline(pipeline, png_bytes, SHAPES_DEFAULT_PROMPT, segmenter=SHAPES_SEGMENTER)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

WEIGHTS_DIR = Path(__file__).parent / "weights"
SHAPES_DETECTOR_DIRNAME = "gdino-shapes"
SHAPES_SAM_FILENAME = "sam_shapes.pth"
SHAPES_SEGMENTER = "sam_shapes"  # segmenter name in pipeline.registry.SEGMENTERS after register_shapes_sam()
SHAPES_SAM_MODEL_TYPE = "vit_shapes"  # key in segment_anything.sam_model_registry after register_shapes_sam()

# Fixed evaluation settings (the figures in docs/toy-models.md were measured with these).
SHAPES_INPUT_SIZE = 160  # detector short side; scenes are drawn at this size by default, so no resize happens
SHAPES_SCENE_SIZE = (160, 160)
SHAPES_BOX_THRESHOLD = 0.3
SHAPES_TEXT_THRESHOLD = 0.25
SHAPES_SAM_IMG_SIZE = 256  # the tiny SAM's img_size: SamPredictor resizes the longest side to this
SHAPES_DEFAULT_PROMPT = "red square. blue circle. green triangle."

KINDS: dict[str, tuple[str, ...]] = {  # kind -> words a prompt may use for it (first = the kind's own name)
    "square": ("square", "box"),
    "circle": ("circle", "ball"),
    "triangle": ("triangle", "pyramid"),
}
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 35),
    "green": (40, 170, 60),
    "blue": (40, 75, 215),
    "yellow": (225, 205, 40),
}
# A kind and a colour the committed detector never saw (bench.finetune teaches them): drawn only when a scene names
# them, so the random scene streams (the toy models' training and evaluation) stay as they were.
NEW_KINDS: dict[str, tuple[str, ...]] = {"hexagon": ("hexagon",)}
NEW_COLOURS: dict[str, tuple[int, int, int]] = {"purple": (150, 55, 190)}
_ALL_KINDS = {**KINDS, **NEW_KINDS}
_ALL_COLOURS = {**COLOURS, **NEW_COLOURS}

# Grounding DINO hard-codes these ids: [PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, "."=1012, "?"=1029.
_FIXED_TOKENS = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}
VOCAB_WORDS = tuple(
    dict.fromkeys(
        [word for words in KINDS.values() for word in words]
        + list(COLOURS)
        + "shape shapes a an the and of on with squares boxes circles balls triangles pyramids".split()
        + "orange purple white black grey gray pink brown dog cat car person star".split()
    )
)


def write_shapes_vocab(path: Path) -> Path:
    """A WordPiece vocabulary where every shape, colour and synonym word is one whole token (ids from 1100 on),
    Grounding DINO's special tokens sit at the ids it hard-codes, and single letters / ##letters spell the rest."""
    extra = (
        list(VOCAB_WORDS)
        + list("abcdefghijklmnopqrstuvwxyz0123456789")
        + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
        + list(",:;!-'")
    )
    tokens = [f"[unused{i}]" for i in range(1100 + len(extra))]
    for index, token in _FIXED_TOKENS.items():
        tokens[index] = token
    tokens[1100:] = extra
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(tokens) + "\n")
    return path


@dataclass
class Shape:
    kind: str  # square | circle | triangle
    colour: str  # red | green | blue | yellow
    xyxy: np.ndarray  # (4,) float32 pixels, box of the visible mask (x1, y1, x2, y2), x2/y2 exclusive
    mask: np.ndarray = field(repr=False)  # (H, W) bool, visible pixels

    @property
    def name(self) -> str:
        return f"{self.colour} {self.kind}"


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Low-saturation backgrounds (grey, gradient, noise, blotches) so colour stays the shapes' cue."""
    style = rng.integers(4)
    base = rng.uniform(70, 190)
    tint = rng.uniform(-18, 18, size=3)
    if style == 0:
        image = np.full((height, width, 3), base, np.float32) + tint
    elif style == 1:
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = (xx * math.cos(angle) + yy * math.sin(angle)) / max(width, height)
        image = base + rng.uniform(-80, 80) * ramp[..., None] + tint
    elif style == 2:
        image = np.full((height, width, 3), base, np.float32) + tint
    else:
        small = rng.uniform(-45, 45, size=(4, 4, 1)).astype(np.float32)
        blotches = np.asarray(Image.fromarray(small[..., 0]).resize((width, height), Image.BILINEAR))[..., None]
        image = base + blotches + tint
    noise = rng.uniform(0, 28) if style != 0 else rng.uniform(0, 8)
    image = image + rng.normal(0, noise, size=(height, width, 1)) + rng.normal(0, noise / 3, size=(height, width, 3))
    return image


def _draw(kind: str, width: int, height: int, cx: float, cy: float, size: float, angle: float) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    r = size / 2
    if kind == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif kind == "triangle":
        points = [
            (cx + r * math.cos(angle + k * 2 * math.pi / 3), cy + r * math.sin(angle + k * 2 * math.pi / 3))
            for k in range(3)
        ]
        draw.polygon(points, fill=255)
    elif kind == "hexagon":
        draw.polygon(
            [
                (cx + r * math.cos(angle + k * math.pi / 3), cy + r * math.sin(angle + k * math.pi / 3))
                for k in range(6)
            ],
            fill=255,
        )
    else:
        raise ValueError(kind)
    return np.asarray(canvas) > 127


def _box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def make_scene(
    rng: np.random.Generator,
    size: tuple[int, int] = SHAPES_SCENE_SIZE,
    shapes: Sequence[tuple[str, str]] | int | None = None,
    min_size: float = 0.16,
    max_size: float = 0.42,
) -> tuple[Image.Image, list[Shape]]:
    """One scene: ``size`` = (W, H); ``shapes`` = [(colour, kind), ...], a count, or None for 1-4 random ones.

    Shapes may overlap a little (later ones on top); each keeps >= 70 % of its pixels visible, and ``Shape.xyxy``
    and ``Shape.mask`` describe what is visible. Deterministic for a given ``rng`` state.
    """
    width, height = size
    if shapes is None or isinstance(shapes, int):
        count = int(rng.integers(1, 5)) if shapes is None else shapes
        combos = [(c, k) for c in COLOURS for k in KINDS]
        picked = [combos[i] for i in rng.choice(len(combos), size=count, replace=False)]
        if count >= 2 and rng.random() < 0.1:  # sometimes two shapes of the same colour and kind
            picked[-1] = picked[0]
        shapes = picked
    image = _background(rng, width, height)
    placed: list[tuple[str, str, np.ndarray]] = []
    union = np.zeros((height, width), bool)
    short = min(width, height)
    for colour, kind in shapes:
        if colour not in _ALL_COLOURS or kind not in _ALL_KINDS:
            raise ValueError(f"Unknown shape {colour} {kind}")
        for _attempt in range(60):
            side = rng.uniform(min_size, max_size) * short
            cx, cy = rng.uniform(side / 2, width - side / 2), rng.uniform(side / 2, height - side / 2)
            mask = _draw(kind, width, height, cx, cy, side, rng.uniform(0, 2 * math.pi))
            if mask.sum() < 30:
                continue
            # Every shape already placed must keep >= 70 % visible; the new one may cover at most 30 % of itself.
            if (mask & union).sum() > 0.3 * mask.sum():
                continue
            if all(((m & ~mask).sum() >= 0.7 * m.sum()) for _, _, m in placed):
                break
        else:
            continue  # no room: drop this shape
        placed = [(c, k, m & ~mask) for c, k, m in placed] + [(colour, kind, mask)]
        union |= mask
    for colour, _kind, mask in placed:
        rgb = np.array(_ALL_COLOURS[colour], np.float32) + rng.uniform(-25, 25, size=3)
        shade = rng.normal(0, 6, size=(height, width, 1))
        image = np.where(mask[..., None], rgb + shade, image)
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")
    found = [Shape(kind=k, colour=c, xyxy=_box(m), mask=m) for c, k, m in placed if m.any()]
    return picture, found


@dataclass
class ScenePrompt:
    """A prompt for a scene: ``phrases[i]`` is a prompt phrase, ``targets[j]`` is the phrase index of shape j
    (or -1 when no phrase asks for it)."""

    phrases: list[str]
    targets: list[int]

    @property
    def text(self) -> str:
        return " ".join(f"{phrase}." for phrase in self.phrases)


def make_prompt(
    rng: np.random.Generator,
    shapes: Sequence[Shape],
    distractors: int | None = None,
    skip: float = 0.15,
    synonyms: bool = True,
    kind_only: float = 0.1,
) -> ScenePrompt:
    """Phrases for the shapes (colour + kind word, a synonym half of the time), a few phrases for absent shapes
    (same colour or same kind as a present one: only the whole phrase tells them apart), and sometimes a present
    shape left unasked (it must then not be found). Phrase order is shuffled."""
    present = list(dict.fromkeys((s.colour, s.kind) for s in shapes))
    asked = [combo for combo in present if rng.random() >= skip] or present[:1]
    queries: list[tuple[str | None, str]] = []
    for colour, kind in asked:
        same_kind = [c for c, k in present if k == kind]
        if len(set(same_kind)) == 1 and rng.random() < kind_only and all(k != kind for _, k in queries):
            queries.append((None, kind))
        elif (None, kind) not in queries:
            queries.append((colour, kind))
    count = int(rng.integers(0, 3)) if distractors is None else distractors
    absent = [(c, k) for c in COLOURS for k in KINDS if (c, k) not in present and (None, k) not in queries]
    rng.shuffle(absent)
    absent.sort(key=lambda ck: -(any(ck[0] == c or ck[1] == k for c, k in present)))  # near misses first
    queries += absent[:count]
    order = rng.permutation(len(queries))
    queries = [queries[i] for i in order]
    phrases = []
    for colour, kind in queries:
        words = KINDS[kind]
        word = words[int(rng.integers(len(words)))] if synonyms and rng.random() < 0.5 else kind
        phrases.append(word if colour is None else f"{colour} {word}")
    targets = []
    for shape in shapes:
        index = -1
        for i, (colour, kind) in enumerate(queries):
            if kind == shape.kind and colour in (None, shape.colour):
                index = i
                break
        targets.append(index)
    return ScenePrompt(phrases=phrases, targets=targets)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, 4) x (m, 4) xyxy -> (n, m) IoU."""
    a, b = np.asarray(a, np.float32).reshape(-1, 4), np.asarray(b, np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-6)


def right_box_ious(
    shapes: Sequence[Shape],
    prompt: ScenePrompt,
    xyxy: np.ndarray,
    phrases: Sequence[str],
    scores: np.ndarray,
    iou: float = 0.5,
) -> list[float]:
    """The box IoU of each right detection: its prompt phrase is the one that asks for the shape and its box has
    IoU >= ``iou`` with it; each shape counts once (highest score first, on the free shape it overlaps most)."""
    wanted = [(i, prompt.phrases[t]) for i, t in enumerate(prompt.targets) if t >= 0]
    ious = box_iou(xyxy, np.stack([s.xyxy for s in shapes])) if len(xyxy) and len(shapes) else np.zeros((len(xyxy), 0))
    used: set[int] = set()
    right = []
    for d in np.argsort(-np.asarray(scores)):
        best, best_iou = None, iou
        for i, phrase in wanted:
            if i not in used and phrases[d] == phrase and ious[d, i] >= best_iou:
                best, best_iou = i, ious[d, i]
        if best is not None:
            used.add(best)
            right.append(float(best_iou))
    return right


def match_detections(
    shapes: Sequence[Shape],
    prompt: ScenePrompt,
    xyxy: np.ndarray,
    phrases: Sequence[str],
    scores: np.ndarray,
    iou: float = 0.5,
) -> tuple[int, int, int]:
    """(true positives, asked shapes, detections), right detections as ``right_box_ious`` counts them."""
    hits = len(right_box_ious(shapes, prompt, xyxy, phrases, scores, iou))
    return hits, sum(t >= 0 for t in prompt.targets), len(xyxy)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


# --- the tiny SAM -------------------------------------------------------------------------------------------------

SAM_SHAPES_CONFIG = dict(
    img_size=SHAPES_SAM_IMG_SIZE,
    patch_size=8,
    encoder_dim=48,
    encoder_depth=3,
    encoder_heads=2,
    window_size=8,
    global_attn_indexes=(2,),
    prompt_dim=32,
    decoder_depth=2,
    decoder_mlp_dim=128,
    decoder_heads=2,
)


def build_shapes_sam(checkpoint: str | None = None):
    """segment_anything's ``Sam`` from its own blocks at toy width (mask decoder 32 wide instead of 256, 256 px
    input, 8 px patches so masks come out at 128x128). Loads a state dict (float16 or float32) when given one."""
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    c = SAM_SHAPES_CONFIG
    grid = c["img_size"] // c["patch_size"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=c["encoder_depth"],
            embed_dim=c["encoder_dim"],
            img_size=c["img_size"],
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=c["encoder_heads"],
            patch_size=c["patch_size"],
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=c["global_attn_indexes"],
            window_size=c["window_size"],
            out_chans=c["prompt_dim"],
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=c["prompt_dim"],
            image_embedding_size=(grid, grid),
            input_image_size=(c["img_size"], c["img_size"]),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=c["decoder_depth"],
                embedding_dim=c["prompt_dim"],
                mlp_dim=c["decoder_mlp_dim"],
                num_heads=c["decoder_heads"],
            ),
            transformer_dim=c["prompt_dim"],
            iou_head_depth=3,
            iou_head_hidden_dim=64,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    sam.eval()
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        sam.load_state_dict({k: v.float() for k, v in state.items()})
    return sam


def register_shapes_sam() -> None:
    """Make 'sam_shapes' a segmenter name the product resolves: model type 'vit_shapes' in segment_anything's
    registry, and a SegmenterSpec in pipeline.registry (its URL is a placeholder: pass the checkpoint)."""
    import segment_anything

    from pipeline.registry import SegmenterSpec, register_segmenter

    segment_anything.sam_model_registry[SHAPES_SAM_MODEL_TYPE] = build_shapes_sam
    register_segmenter(
        SegmenterSpec(SHAPES_SEGMENTER, "segment_anything", SHAPES_SAM_MODEL_TYPE, SHAPES_SAM_FILENAME, _SAM_URL)
    )


_SAM_URL = "http://127.0.0.1:9/sam_shapes.pth"  # placeholder: the checkpoint is committed, pass its path


def load_shapes_pipeline(
    detector_dir: Path | None = None, sam_checkpoint: Path | None = None, input_size: int = SHAPES_INPUT_SIZE
):
    """The product's GroundingPipeline on CPU with the shapes detector (and the shapes SAM as 'sam_shapes')."""
    register_shapes_sam()
    detector = str(detector_dir or shapes_detector_dir())
    checkpoints = {SHAPES_SEGMENTER: str(sam_checkpoint or shapes_sam_checkpoint())}
    from pipeline import GroundingPipeline, PipelineSettings

    return GroundingPipeline.from_settings(
        PipelineSettings(detector=detector, device="cpu", input_size=input_size, checkpoints=checkpoints, offline=True)
    )


def run_pipeline(
    pipeline,
    image,
    prompt: str,
    box_threshold: float = SHAPES_BOX_THRESHOLD,
    text_threshold: float = SHAPES_TEXT_THRESHOLD,
    segmenter: str | None = None,
):
    """``pipeline(image, prompt)`` at the shapes models' thresholds (and masks from ``segmenter``)."""
    from pipeline import Options

    return pipeline(image, prompt, Options(box_threshold, text_threshold, segmenter))


def shapes_detector_dir() -> Path:
    """The committed shapes Grounding DINO (a save_pretrained directory with its processor and tokenizer)."""
    return WEIGHTS_DIR / SHAPES_DETECTOR_DIRNAME


def shapes_sam_checkpoint() -> Path:
    """The committed shapes SAM state dict (load with register_shapes_sam() + segmenter 'sam_shapes')."""
    return WEIGHTS_DIR / SHAPES_SAM_FILENAME
