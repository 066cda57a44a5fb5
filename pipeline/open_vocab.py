"""Open-vocabulary detectors that score whole phrases, not tokens: OWLv2 (which also searches by example boxes) and
OmDet-Turbo.

Each prompt phrase is one text query, so a box's phrase is simply the query it scores highest on and there is no
text threshold (their registry families do not read it: ``Options.text_threshold`` is ignored, the UI hides it). Raw
outputs are cached like Grounding DINO's, so a new box threshold runs no model.
"""

from __future__ import annotations

import numpy as np
import torch

from .cache import LRUCache
from .detector import CachedDetector, FilteredDetections, RawDetections, TokenizedPrompt, pixel_boxes
from .errors import ExemplarError, PromptError
from .images import LoadedImage
from .options import Options
from .prompts import Exemplar, ExemplarQuery, Prompt


class PhraseDetector(CachedDetector):
    """A detector whose text side is one query per phrase, each at most ``max_phrase_tokens`` tokens."""

    @property
    def max_phrase_tokens(self) -> int:
        return int(self.model.config.text_config.max_position_embeddings)

    def tokenize(self, prompt: Prompt) -> TokenizedPrompt:
        """The phrases as the text encoder reads them, and which of the prompt's names each query (each phrase,
        then each example box) stands for; ``PromptError`` for a phrase longer than it reads (it would be cut
        silently)."""
        cached = self._tokens.get(prompt.key)
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
        ids = (
            tokenizer(
                list(prompt.phrases), padding="max_length", max_length=self.max_phrase_tokens, return_tensors="pt"
            )["input_ids"]
            if prompt.phrases
            else torch.zeros((0, self.max_phrase_tokens), dtype=torch.long)
        )
        names = prompt.names
        examples = [names.index(e.label) if e.positive else -1 for e in prompt.exemplars]
        tokens = TokenizedPrompt(prompt, ids, torch.tensor([*range(len(prompt.phrases)), *examples], dtype=torch.long))
        self._tokens.put(prompt.key, tokens)
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
        """Kept boxes, each named by its whole phrase (or its example box's label)."""
        index = phrase_index.numpy().astype(np.int64)
        return FilteredDetections(
            xyxy=xyxy,
            scores=scores.numpy().astype(np.float32),
            phrases=[tokens.prompt.names[i] for i in index],
            phrase_index=index,
        )


class Owlv2Detector(PhraseDetector):
    """OWLv2: a box and a score per (image patch, query), where a query is a phrase or an example box; the image is
    padded to a square before resizing, so normalised boxes scale by the longer side. Transformers' post-processing
    has no NMS for text queries; nor do we.

    It runs in its parts, as transformers' ``image_guided_detection`` does: the vision encoder's feature map is
    cached per image, so a new prompt (new phrases or new example boxes) on a cached image runs only the text
    encoder and the heads. An example box becomes a query as in transformers' ``embed_image_query``: the class
    embedding of one of the model's own predicted boxes on the reference image, here the most object-like
    (objectness) of those overlapping the drawn box within 80 % of the best IoU."""

    def __init__(self, *args, vision_cache_items: int = 8, **kwargs):
        super().__init__(*args, **kwargs)
        self._vision: LRUCache[torch.Tensor] = LRUCache(vision_cache_items)  # image sha1 -> (h, w, hidden) map

    def preprocess(self, image: LoadedImage) -> dict:
        return {"image": image}  # resized inside ``_features``, only when the image's features are not cached

    def _group_key(self, pixels: dict) -> tuple:
        return ()  # every image is resized to the same square: all share one pass

    def _features(self, images: list[LoadedImage]) -> list[torch.Tensor]:
        """Each image's feature map (patch rows, patch columns, hidden) from the cache, the others from one vision
        encoder pass over them."""
        found = {image.sha1: self._vision.get(image.sha1) for image in images}
        missing = list({image.sha1: image for image in images if found[image.sha1] is None}.values())
        if missing:
            pixels = self.processor.image_processor(images=[image.pil for image in missing], return_tensors="pt")
            with self._model_lock, torch.inference_mode():
                maps = self.model.image_embedder(pixel_values=self._inputs(dict(pixels))["pixel_values"])[0]
            for image, feature_map in zip(missing, maps):
                self._vision.put(image.sha1, feature_map)
                found[image.sha1] = feature_map
        return [found[image.sha1] for image in images]

    def embed_exemplar(self, exemplar: Exemplar, image: LoadedImage | None = None) -> ExemplarQuery:
        """``exemplar`` as this model reads it, from its own reference image (else ``image``): a query to keep and
        use on other images without the reference image."""
        reference = exemplar.image or image
        if reference is None:
            raise ExemplarError(f"The example box for {exemplar.label!r} has no image: give the image it is drawn on.")
        vector = self._box_query(exemplar, reference, self._features([reference])[0])
        return ExemplarQuery(self.model_id, tuple(vector.float().cpu().tolist()), exemplar.label, exemplar.positive)

    def _box_query(self, exemplar: Exemplar, reference: LoadedImage, feature_map: torch.Tensor) -> torch.Tensor:
        """The class embedding of the predicted box that stands for ``exemplar`` on ``reference``."""
        from torchvision.ops import box_convert, box_iou, generalized_box_iou

        exemplar.check_on(reference.width, reference.height)
        patches = feature_map.reshape(1, -1, feature_map.shape[-1])
        with self._model_lock, torch.inference_mode():
            class_embeds = self.model.class_predictor(patches)[1][0]
            boxes = self.model.box_predictor(patches, feature_map[None])[0].float()
            objectness = self.model.objectness_predictor(patches)[0].float()
            drawn = torch.tensor([exemplar.xyxy], device=boxes.device) / max(reference.width, reference.height)
            corners = box_convert(boxes, "cxcywh", "xyxy")
            overlap = box_iou(drawn, corners)[0]
            if not overlap.any():  # no predicted box overlaps it: the nearest, by generalised IoU
                overlap = generalized_box_iou(drawn, corners)[0]
            near = overlap >= overlap.max() - 0.2 * overlap.max().abs()
            return class_embeds[torch.where(near, objectness, -torch.inf).argmax()]

    def _queries(self, tokens: TokenizedPrompt, images: list[LoadedImage], maps: list[torch.Tensor]) -> torch.Tensor:
        """(images, queries, dim): the phrases' text embeddings, then one class embedding per example."""
        prompt = tokens.prompt
        text = torch.zeros((0, self.model.config.text_config.hidden_size), device=self.device, dtype=self.dtype)
        if prompt.phrases:
            with self._model_lock, torch.inference_mode():
                pooled = self.model.owlv2.get_text_features(**self._inputs(dict(self.phrase_inputs(tokens))))
            text = pooled.pooler_output / pooled.pooler_output.norm(dim=-1, keepdim=True)  # as the model's forward
        shared = {}  # queries that are the same on every image: made once
        for exemplar in prompt.exemplars:
            if isinstance(exemplar, ExemplarQuery):
                if exemplar.model != self.model_id:
                    raise ExemplarError(
                        f"The example query for {exemplar.label!r} was made by {exemplar.model}, not by this "
                        f"detector ({self.model_id}): make it again from its box with this detector."
                    )
                shared[exemplar.key] = torch.tensor(exemplar.vector, device=self.device, dtype=self.dtype)
            elif exemplar.image is not None:
                found = self._features([exemplar.image])[0]
                shared[exemplar.key] = self._box_query(exemplar, exemplar.image, found)
        rows = []
        for image, feature_map in zip(images, maps):
            examples = [
                shared[e.key] if e.key in shared else self._box_query(e, image, feature_map) for e in prompt.exemplars
            ]
            rows.append(torch.cat([text, *(vector[None] for vector in examples)]))
        return torch.stack(rows)

    def _forward(self, pixels: list[dict], tokens: TokenizedPrompt) -> list[RawDetections]:
        images = [p["image"] for p in pixels]
        references = [e.image for e in tokens.prompt.exemplars if isinstance(e, Exemplar) and e.image is not None]
        maps = self._features(images + references)[: len(images)]  # one encoder pass for targets and references
        queries = self._queries(tokens, images, maps)
        feature_maps = torch.stack(maps)
        patches = feature_maps.reshape(len(images), -1, feature_maps.shape[-1])
        with self._model_lock, torch.inference_mode():
            logits = self.model.class_predictor(patches, queries)[0]
            boxes = self.model.box_predictor(patches, feature_maps)
        return [RawDetections(logits[i].float().cpu(), boxes[i].float().cpu(), tokens) for i in range(len(images))]

    def postprocess(self, raw: RawDetections, width: int, height: int, options: Options) -> FilteredDetections:
        """Each box's best query names it; a box most like a negative example is no detection."""
        scores, query = raw.logits.sigmoid().max(dim=-1)
        name = raw.tokens.phrase_of_token[query]
        keep = (scores > options.box_threshold) & (name >= 0)
        side = max(width, height)
        xyxy = pixel_boxes(raw.boxes[keep], (side, side), (width, height))
        return self._filtered(scores[keep], name[keep], xyxy, raw.tokens)


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
