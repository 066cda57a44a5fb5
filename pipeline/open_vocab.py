"""Open-vocabulary detectors that score whole phrases, not tokens: OWLv2 and OmDet-Turbo.

Each prompt phrase is one text query, so a box's phrase is simply the query it scores highest on and there is no
text threshold (their registry families do not read it: ``Options.text_threshold`` is ignored, the UI hides it). Raw
outputs are cached like Grounding DINO's, so a new box threshold runs no model.
"""

from __future__ import annotations

import numpy as np
import torch

from .detector import CachedDetector, FilteredDetections, RawDetections, TokenizedPrompt, pixel_boxes
from .errors import PromptError
from .images import LoadedImage
from .options import Options
from .prompts import Prompt


class PhraseDetector(CachedDetector):
    """A detector whose text side is one query per phrase, each at most ``max_phrase_tokens`` tokens."""

    @property
    def max_phrase_tokens(self) -> int:
        return int(self.model.config.text_config.max_position_embeddings)

    def tokenize(self, prompt: Prompt) -> TokenizedPrompt:
        """The phrases as the text encoder reads them; ``PromptError`` for one longer than it reads (it would be
        cut silently)."""
        cached = self._tokens.get(prompt.text)
        if cached is not None:
            return cached
        tokenizer = self.processor.tokenizer
        for phrase in prompt.phrases:
            count = len(tokenizer(phrase)["input_ids"])
            if count > self.max_phrase_tokens:
                raise PromptError(
                    f"The phrase {phrase!r} is {count} tokens long; this detector reads at most "
                    f"{self.max_phrase_tokens} per phrase. Shorten it."
                )
        ids = tokenizer(
            list(prompt.phrases), padding="max_length", max_length=self.max_phrase_tokens, return_tensors="pt"
        )["input_ids"]
        tokens = TokenizedPrompt(prompt, ids, torch.arange(len(prompt.phrases)))
        self._tokens.put(prompt.text, tokens)
        return tokens

    def phrase_inputs(self, tokens: TokenizedPrompt, copies: int = 1) -> dict[str, torch.Tensor]:
        """The prompt's phrases ``copies`` times over (one set per image), padded as the text encoder reads them."""
        return self.processor.tokenizer(
            list(tokens.prompt.phrases) * copies,
            padding="max_length",
            max_length=self.max_phrase_tokens,
            truncation=True,
            return_tensors="pt",
        )

    def preprocess(self, image: LoadedImage) -> dict[str, torch.Tensor]:
        return self.processor.image_processor(images=[image.pil], return_tensors="pt")

    @staticmethod
    def _filtered(
        scores: torch.Tensor, phrase_index: torch.Tensor, xyxy: np.ndarray, tokens: TokenizedPrompt
    ) -> FilteredDetections:
        """Kept boxes, each named by its whole phrase."""
        index = phrase_index.numpy().astype(np.int64)
        return FilteredDetections(
            xyxy=xyxy,
            scores=scores.numpy().astype(np.float32),
            phrases=[tokens.prompt.phrases[i] for i in index],
            phrase_index=index,
        )


class Owlv2Detector(PhraseDetector):
    """OWLv2: a box and a score per (image patch, phrase); the image is padded to a square before resizing, so
    normalised boxes scale by the longer side. Transformers' post-processing has no NMS for text queries; nor do we."""

    def _forward(self, pixels: list[dict[str, torch.Tensor]], tokens: TokenizedPrompt) -> list[RawDetections]:
        text = self.phrase_inputs(tokens, len(pixels))
        inputs = self._inputs({**text, "pixel_values": torch.cat([p["pixel_values"] for p in pixels])})
        with self._model_lock, torch.inference_mode():
            outputs = self.model(**inputs)
        return [
            RawDetections(outputs.logits[i].float().cpu(), outputs.pred_boxes[i].float().cpu(), tokens)
            for i in range(len(pixels))
        ]

    def postprocess(self, raw: RawDetections, width: int, height: int, options: Options) -> FilteredDetections:
        scores, phrase = raw.logits.sigmoid().max(dim=-1)
        keep = scores > options.box_threshold
        side = max(width, height)
        xyxy = pixel_boxes(raw.boxes[keep], (side, side), (width, height))
        return self._filtered(scores[keep], phrase[keep], xyxy, raw.tokens)


class OmDetTurboDetector(PhraseDetector):
    """OmDet-Turbo: a box per query and a score per (query, phrase), read as transformers' post-processing does:
    the best (query, phrase) pairs, at most one per query on average, then NMS per phrase. The image is resized
    without keeping its aspect, so normalised boxes scale by width and height."""

    nms_threshold = 0.5  # transformers' default for this model

    def _forward(self, pixels: list[dict[str, torch.Tensor]], tokens: TokenizedPrompt) -> list[RawDetections]:
        phrases = list(tokens.prompt.phrases)
        classes = self.phrase_inputs(tokens, len(pixels))
        tasks = self.processor.tokenizer(
            [f"Detect {', '.join(phrases)}."] * len(pixels),
            padding="max_length",
            truncation=True,
            max_length=self.max_phrase_tokens,
            return_tensors="pt",
        )
        inputs = self._inputs(
            {
                "pixel_values": torch.cat([p["pixel_values"] for p in pixels]),
                "classes_input_ids": classes["input_ids"],
                "classes_attention_mask": classes["attention_mask"],
                "tasks_input_ids": tasks["input_ids"],
                "tasks_attention_mask": tasks["attention_mask"],
                "classes_structure": torch.full((len(pixels),), len(phrases), dtype=torch.long),
            }
        )
        with self._model_lock, torch.inference_mode():
            outputs = self.model(**inputs)
        return [
            RawDetections(
                outputs.decoder_class_logits[i].float().cpu(), outputs.decoder_coord_logits[i].float().cpu(), tokens
            )
            for i in range(len(pixels))
        ]

    def postprocess(self, raw: RawDetections, width: int, height: int, options: Options) -> FilteredDetections:
        from torchvision.ops import batched_nms

        probs = raw.logits.sigmoid()
        queries, phrases = probs.shape
        scores, pairs = probs.flatten().topk(queries)
        query, phrase = pairs // phrases, pairs % phrases
        keep = scores > options.box_threshold
        query, scores, phrase = query[keep], scores[keep], phrase[keep]
        corners = pixel_boxes(raw.boxes[query], (width, height), None)  # clipped after NMS, as transformers does
        kept = batched_nms(torch.from_numpy(corners), scores, phrase, self.nms_threshold)
        xyxy = pixel_boxes(raw.boxes[query[kept]], (width, height), (width, height))
        return self._filtered(scores[kept], phrase[kept], xyxy, raw.tokens)
