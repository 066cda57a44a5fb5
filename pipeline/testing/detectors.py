"""Random OWLv2, OmDet-Turbo and SAM 3 models (tiny, or the real architecture for benchmarks), saved with their
processors the way their Hub copies are, so the product loads them by directory offline.

All three read text with a CLIP byte-level BPE tokenizer; ``clip_tokenizer`` builds a small one offline: every byte
as a symbol (so any text tokenizes), whole-word merges for the tests' words, and the start/end tokens as the two
highest ids (OmDet's and OWL's text poolers take ``input_ids.argmax(-1)`` as the end token's position).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from .models import RANDOM_WEIGHTS_MARKER, WORDS

_CLIP_WORDS = WORDS + "square circle triangle green blue yellow ball pyramid detect photo".split()


def _byte_symbols() -> list[str]:
    """GPT-2 / CLIP's printable stand-in for each of the 256 bytes."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 256)]
    extra = iter(range(256, 512))
    return [chr(b if b in kept else next(extra)) for b in range(256)]


def clip_tokenizer(max_length: int):
    """A CLIP tokenizer over a small vocabulary, built offline (``model_max_length`` = ``max_length``)."""
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    vocab = {token: i for i, token in enumerate(symbols + [s + "</w>" for s in symbols])}
    merges: list[str] = []
    for word in _CLIP_WORDS:
        pieces = [*word[:-1], word[-1] + "</w>"]
        joined = pieces[0]
        for piece in pieces[1:]:
            if f"{joined} {piece}" not in merges:
                merges.append(f"{joined} {piece}")
            joined += piece
            vocab.setdefault(joined, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        return CLIPTokenizer.from_pretrained(tmp, model_max_length=max_length)


def _clip_text(tokenizer, hidden: int, max_length: int) -> dict:
    return dict(
        model_type="clip_text_model",
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )


def _save(directory: Path, model, processor) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(directory)
    processor.save_pretrained(directory)
    (directory / RANDOM_WEIGHTS_MARKER).write_text("Random weights: boxes and masks from this model mean nothing.\n")
    return directory


def save_owlv2(directory: Path, shape: str = "tiny", seed: int = 0) -> Path:
    """OWLv2: "tiny" is 64 px images in 16 px patches (16 boxes per image); "real" is owlv2-base-patch16's shape."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    tokenizer = clip_tokenizer(16)
    torch.manual_seed(seed)
    if shape == "tiny":
        vision = dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=64,
            patch_size=16,
        )
        config = Owlv2Config(text_config=_clip_text(tokenizer, 32, 16), vision_config=vision, projection_dim=32)
        images = Owlv2ImageProcessor(size={"height": 64, "width": 64})
    elif shape == "real":
        config = Owlv2Config(
            text_config={
                "vocab_size": len(tokenizer),
                "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id,
            },
            vision_config={"image_size": 960},
        )  # the checkpoint's (the config default is 768)
        images = Owlv2ImageProcessor()
    else:
        raise ValueError(shape)
    model = Owlv2ForObjectDetection(config)
    if shape == "tiny":  # its random box head (std 1) saturates every box into a line at the edge; scaled down, each
        with torch.no_grad():  # patch predicts a box about itself, as a trained one does, for example boxes to match
            model.box_head.dense2.weight.mul_(0.005)
    return _save(directory, model, Owlv2Processor(image_processor=images, tokenizer=tokenizer))


def save_omdet_turbo(directory: Path, shape: str = "tiny", seed: int = 0) -> Path:
    """OmDet-Turbo: "tiny" has transformers' own small Swin backbone, resizes images to 128 x 128 and has 20
    queries; "real" is omdet-turbo-swin-tiny-hf's shape (timm's Swin-T, randomly initialised)."""
    from transformers import DetrImageProcessor, OmDetTurboConfig, OmDetTurboForObjectDetection, OmDetTurboProcessor

    tokenizer = clip_tokenizer(77)
    torch.manual_seed(seed)
    if shape == "real":  # omdet-turbo-swin-tiny-hf's shape: timm's Swin-T (random, nothing downloaded), 640 px
        config = OmDetTurboConfig(
            text_config=_clip_text(tokenizer, 512, 77)
            | dict(intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
            use_pretrained_backbone=False,
        )
        images = DetrImageProcessor(
            size={"height": 640, "width": 640},
            do_rescale=False,
            do_pad=False,
            image_mean=[123.675, 116.28, 103.53],
            image_std=[58.395, 57.12, 57.375],
        )
        return _save(
            directory,
            OmDetTurboForObjectDetection(config),
            OmDetTurboProcessor(image_processor=images, tokenizer=tokenizer),
        )
    if shape != "tiny":
        raise ValueError(shape)
    swin = dict(
        model_type="swin",
        image_size=128,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=4,
        mlp_ratio=2.0,
        out_indices=[2, 3, 4],
    )
    text, width = 48, 32
    config = OmDetTurboConfig(
        backbone_config=swin,
        text_config=_clip_text(tokenizer, text, 77),
        image_size=128,
        apply_layernorm_after_vision_backbone=False,  # that norm expects timm's channels-last maps
        text_projection_in_dim=text,
        text_projection_out_dim=text,
        class_embed_dim=text,
        task_encoder_hidden_dim=2 * text,
        encoder_in_channels=[32, 64, 128],
        encoder_hidden_dim=width,
        encoder_attention_heads=2,
        encoder_dim_feedforward=2 * width,
        encoder_layers=1,
        encoder_projection_indices=[2],
        vision_features_channels=[width] * 3,
        decoder_hidden_dim=width,
        decoder_num_heads=2,
        decoder_num_layers=1,
        decoder_dim_feedforward=2 * width,
        decoder_num_points=2,
        num_feature_levels=3,
        num_queries=20,
    )
    images = DetrImageProcessor(
        size={"height": 128, "width": 128},
        do_rescale=False,
        do_pad=False,
        image_mean=[123.675, 116.28, 103.53],
        image_std=[58.395, 57.12, 57.375],
    )
    return _save(
        directory,
        OmDetTurboForObjectDetection(config),
        OmDetTurboProcessor(image_processor=images, tokenizer=tokenizer),
    )


def save_sam3(directory: Path, shape: str = "tiny", seed: int = 0) -> Path:
    """SAM 3's image model: "tiny" is a 2-layer ViT of width 32 on 224 px images with 20 queries (0.27 M
    parameters); "real" is facebook/sam3's shape (840 M)."""
    from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

    tokenizer = clip_tokenizer(32)
    torch.manual_seed(seed)
    if shape == "tiny":
        vit = dict(
            model_type="sam3_vit_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=224,
            patch_size=14,
            window_size=8,
            global_attn_indexes=[1],
            pretrain_image_size=224,
        )
        small = dict(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64)
        config = Sam3Config(
            vision_config=dict(
                backbone_config=vit, fpn_hidden_size=32, backbone_feature_sizes=[[64, 64], [32, 32], [16, 16]]
            ),
            text_config={**_clip_text(tokenizer, 32, 32), "projection_dim": 32},
            geometry_encoder_config=small,
            detr_encoder_config=small,
            detr_decoder_config={**small, "num_queries": 20},
            mask_decoder_config=dict(hidden_size=32, num_upsampling_stages=3, num_attention_heads=2),
        )
        images = Sam3ImageProcessor(size={"height": 224, "width": 224})
    elif shape == "real":
        config = Sam3Config(
            text_config={
                "vocab_size": len(tokenizer),
                "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id,
            }
        )
        images = Sam3ImageProcessor()
    else:
        raise ValueError(shape)
    return _save(directory, Sam3Model(config), Sam3Processor(image_processor=images, tokenizer=tokenizer))
