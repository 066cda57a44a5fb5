"""The Label Studio tab's state, without Gradio: a connection's project and task list, the open task, and the
reviewer's decisions on its detections (keep or drop, label) that become one push."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qs, urlsplit

import numpy as np
import supervision as sv
from PIL import Image

from pipeline import (
    DEFAULT_MAX_PIXELS,
    DetectionResult,
    GroundlabelError,
    LoadedImage,
    MaskPrompt,
    Options,
    load_image,
    preview_scale,
    render_preview,
)
from sync import (
    LabelStudioClient,
    LabelStudioResult,
    Project,
    ProjectConfig,
    Pusher,
    PushOutcome,
    Task,
    TaskPage,
    to_label_studio,
)
from sync.regions import BY_TYPE

from .detections import Query, row_at

PAGE_SIZE = 20


@dataclass(eq=False)  # identity-hashed: Gradio re-renders the review rows when a new Review replaces the old one
class Review:
    """Which detections of ``result`` the reviewer keeps, and the label each one gets."""

    image: LoadedImage
    result: DetectionResult
    keep: list[bool]
    labels: list[str | None]
    # the reviewer's clicks per detection row: (x, y, on the object); rows made from clicks alone have no box prompt
    clicks: dict[int, list[tuple[float, float, bool]]] = field(default_factory=dict)
    from_clicks: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, image: LoadedImage, result: DetectionResult) -> Review:
        """Everything kept, except detections whose phrase matched no project label (they need a decision)."""
        return cls(image, result, [label is not None for label in result.labels], list(result.labels))

    def kept(self) -> DetectionResult:
        """The result to push: kept detections only, with the labels the reviewer chose."""
        kept = [i for i, keep in enumerate(self.keep) if keep]
        return self.result[kept].with_labels([self.labels[i] for i in kept])

    @property
    def preview_scale(self) -> float:
        """Preview pixels per image pixel (``pipeline.preview_scale``): clicks on the preview are divided by it."""
        return preview_scale(self.image.width, self.image.height)

    def preview(
        self,
        colors: dict[str, tuple[int, int, int]] | None = None,
        selected: int | None = None,
        show_masks: bool = True,
    ) -> Image.Image:
        """The image with what would be pushed drawn on it, at ``preview_scale``, each label in ``colors``'s colour
        (the project's) where it has one, detection ``selected`` (a row number from 0) highlighted."""
        kept = [i for i, keep in enumerate(self.keep) if keep]
        return render_preview(
            self.image,
            self.kept(),
            colors=colors,
            numbers=[i + 1 for i in kept],
            selected=kept.index(selected) if selected in kept else None,
            show_masks=show_masks,
        )

    def row_at(self, x: float, y: float) -> int | None:
        """The kept detection whose box holds pixel (x, y) (the smallest), or None."""
        return row_at(self.result, x, y, among=[i for i, keep in enumerate(self.keep) if keep])

    def edit(self, boxes: list[dict], masks_for: Callable[[np.ndarray], np.ndarray] | None) -> Review:
        """The review after the reviewer moved, resized, deleted or drew boxes in the editor: ``boxes`` (corners in
        pixels, a label each) become what will be pushed. A box overlapping a shown one (IoU >= 0.5, best first) is
        that detection (relabeled if its label changed), keeping its score and phrase, and its mask unless a corner
        moved by more than a pixel; any other box was drawn (score 1, its label as phrase). Moved and drawn boxes get
        masks from ``masks_for`` (the segmenter's decoder on the cached embedding) when the result has masks."""
        shown, width, height = self.kept(), self.image.width, self.image.height
        xyxy = np.array([[b["xmin"], b["ymin"], b["xmax"], b["ymax"]] for b in boxes], np.float32).reshape(-1, 4)
        xyxy = np.sort(xyxy.reshape(-1, 2, 2), axis=1).reshape(-1, 4).clip(0, [width, height, width, height])
        labels = [str(b.get("label") or "") or None for b in boxes]
        overlap = sv.box_iou_batch(xyxy, shown.xyxy) if len(xyxy) and len(shown) else np.zeros((len(xyxy), 0))
        source: list[int | None] = [None] * len(xyxy)
        for i, j in zip(*np.unravel_index(np.argsort(-overlap, axis=None), overlap.shape)):
            if overlap[i, j] >= 0.5 and source[i] is None and j not in source:
                source[i] = int(j)
        same = [j is not None and np.abs(xyxy[i] - shown.xyxy[j]).max() <= 1 for i, j in enumerate(source)]
        xyxy = np.array(
            [shown.xyxy[j] if keep else box for box, j, keep in zip(xyxy, source, same)], np.float32
        ).reshape(-1, 4)
        masks = None
        if shown.masks is not None and masks_for is not None:
            masks = np.zeros((len(xyxy), height, width), dtype=bool)
            redo = [i for i, keep in enumerate(same) if not keep]
            if redo:
                masks[redo] = masks_for(xyxy[redo])
            for i, keep in enumerate(same):
                if keep:
                    masks[i] = shown.masks[source[i]]
        phrases = [shown.phrases[j] if j is not None else label or "" for j, label in zip(source, labels)]
        prompt_phrases = [shown.prompt_phrases[j] if j is not None else label or "" for j, label in zip(source, labels)]
        edited = replace(
            shown,
            xyxy=xyxy,
            labels=labels,
            phrases=phrases,
            prompt_phrases=prompt_phrases,
            masks=masks,
            scores=[shown.scores[j] if j is not None else 1.0 for j in source],
        )
        return Review(self.image, edited, [True] * len(edited), list(labels))

    def click(
        self,
        row: int | None,
        x: float,
        y: float,
        on_object: bool,
        label: str | None,
        decode: Callable[[MaskPrompt], np.ndarray],
    ) -> Review:
        """The review with a click added to detection ``row``'s mask prompt (its box plus every click on it so far),
        or, with ``row`` None, a new object (labeled ``label``) made from this click; its mask decoded again (decoder
        only: the image's embedding is cached). A new object's box is its mask's bounding box."""
        if self.result.masks is None:
            raise GroundlabelError("Clicks repair masks: choose Boxes + masks and detect first.")
        review = self._copy()
        if row is None:
            row = len(review.result)
            box = np.array([[x, y, x + 1, y + 1]], np.float32)
            review.result = _concat(review.result, box, label)
            review.keep.append(True)
            review.labels.append(label)
            review.from_clicks.add(row)
        review.clicks.setdefault(row, []).append((float(x), float(y), bool(on_object)))
        return review._decoded(row, decode)

    def undo_click(self, row: int, decode: Callable[[MaskPrompt], np.ndarray]) -> Review:
        """The review without detection ``row``'s last click (an object made from clicks alone is dropped with its
        last one)."""
        if not self.clicks.get(row):
            raise GroundlabelError(f"Detection #{row + 1} has no click to undo.")
        review = self._copy()
        review.clicks[row] = review.clicks[row][:-1]
        if not review.clicks[row] and row in review.from_clicks:
            review.keep[row] = False
            return review
        return review._decoded(row, decode)

    def dropped(self, row: int) -> Review:
        """The review with detection ``row`` not kept."""
        review = self._copy()
        review.keep[row] = False
        return review

    def kept_above(self, label: str, threshold: float) -> Review:
        """The review with every detection labeled ``label`` kept when it scores above ``threshold`` and dropped
        otherwise (one label's threshold tried on this task; the other rows stay as they are)."""
        review = self._copy()
        for i, (mine, score) in enumerate(zip(review.labels, review.result.scores)):
            if mine == label:
                review.keep[i] = bool(score > threshold)
        return review

    def relabeled(self, row: int, label: str) -> Review:
        """The review with detection ``row`` labeled ``label`` (and kept)."""
        review = self._copy()
        review.labels[row], review.keep[row] = label, True
        return review

    def _copy(self) -> Review:
        """A new review with the same decisions (Gradio redraws the rows when the review object changes)."""
        return replace(
            self,
            keep=list(self.keep),
            labels=list(self.labels),
            clicks={row: list(points) for row, points in self.clicks.items()},
            from_clicks=set(self.from_clicks),
        )

    def _decoded(self, row: int, decode: Callable[[MaskPrompt], np.ndarray]) -> Review:
        points = self.clicks.get(row, [])
        box = None if row in self.from_clicks else tuple(self.result.xyxy[row])
        mask = decode(
            MaskPrompt(
                box=box, points=tuple((x, y) for x, y, _ in points), positive=tuple(flag for _, _, flag in points)
            )
        )
        masks, xyxy = self.result.masks.copy(), self.result.xyxy.copy()
        masks[row] = mask
        if row in self.from_clicks and mask.any():
            ys, xs = np.nonzero(mask)
            xyxy[row] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        self.result = replace(self.result, masks=masks, xyxy=xyxy)
        return self

    def editor_value(self, colors: dict[str, tuple[int, int, int]]) -> dict:
        """What the box editor shows: the image and the kept boxes, each in its label's colour."""
        shown = self.kept()
        return {
            "image": np.asarray(self.image.pil.convert("RGB")),
            "boxes": [
                {
                    "xmin": float(x0),
                    "ymin": float(y0),
                    "xmax": float(x1),
                    "ymax": float(y1),
                    "label": label or "",
                    **({"color": colors[label]} if label in colors else {}),
                }
                for (x0, y0, x1, y1), label in zip(shown.xyxy, shown.labels)
            ],
        }

    def missing_labels(self) -> list[int]:
        """Numbers (from 1) of kept detections that have no label yet."""
        return [i + 1 for i, (keep, label) in enumerate(zip(self.keep, self.labels)) if keep and label is None]


@dataclass(eq=False)
class Workspace:
    """One browser session's Label Studio: connection, chosen project, a page of its tasks, the open task."""

    client: LabelStudioClient
    pusher: Pusher
    user: str = ""
    max_pixels: int = DEFAULT_MAX_PIXELS
    project: Project | None = None
    config: ProjectConfig | None = None
    unlabeled_only: bool = True
    by_score: bool = False  # the task list sorted by prediction score, lowest (most likely to need a fix) first
    page: TaskPage | None = None
    task: Task | None = None
    query: Query | None = field(default=None, repr=False)
    detector: str | None = None  # the Detector dropdown's choice (None: the app's own)
    show_masks: bool = True  # the reviewer's "Show masks" choice (the preview only: pushes keep their masks)
    editing: bool = False  # the box editor's tab is shown (its image is sent only then)
    stop_prelabel: threading.Event = field(default_factory=threading.Event, repr=False)  # set by Cancel

    def close(self) -> None:
        self.client.close()

    def choose_project(self, project_id: int, unlabeled_only: bool) -> ProjectConfig:
        """Load the project and parse its labeling config (``ConfigError`` says what the config lacks)."""
        project = self.client.project(project_id)
        config = project.config()
        self.project, self.config, self.task, self.query = project, config, None, None
        self.unlabeled_only = unlabeled_only
        self.load_page(1)
        return config

    def load_page(self, number: int) -> TaskPage:
        """Page ``number`` (from 1) of the project's tasks, or of those without annotations."""
        self.page = self.client.tasks(
            self.project.id,
            page=max(1, number),
            page_size=PAGE_SIZE,
            unlabeled_only=self.unlabeled_only,
            by_score=self.by_score,
        )
        return self.page

    def fetch(self, task_id: int, prompt: str, options: Options) -> tuple[Task, Query]:
        """Task ``task_id`` and the query to run on its image, with the project's label mapping."""
        task = self.client.task(task_id)
        image = load_image(self.client.task_image(task, self.config), self.max_pixels)
        return task, Query(image, f"task-{task.id}", prompt, options, self.config.label_map())

    def open(self, task_id: int, prompt: str, options: Options) -> Query:
        """Make task ``task_id`` the one under review."""
        self.task, self.query = self.fetch(task_id, prompt, options)
        return self.query

    def next_task_id(self) -> int | None:
        """The task after the open one in the list; past the page's end, the next page (or, when only unlabeled
        tasks are listed, the list fetched again, since labeled ones leave it)."""
        current = self.task.id if self.task else None
        ids = self.task_ids()
        if current in ids and ids.index(current) + 1 < len(ids):
            return ids[ids.index(current) + 1]
        if self.page is None:
            return None
        if self.unlabeled_only:
            self.load_page(1)
        elif self.page.has_next:
            self.load_page(self.page.page + 1)
        else:
            return None
        return next((task.id for task in self.page.tasks if task.id != current), None)

    def push(
        self, review: Review, kind: str, task_id: int | None = None, replace_older: bool = False
    ) -> tuple[PushOutcome, LabelStudioResult]:
        """Send the kept, relabeled detections to the open task (or ``task_id``) as a prediction or annotation; a
        prediction with ``replace_older`` replaces groundlabel's earlier predictions of the task."""
        missing = review.missing_labels()
        if missing:
            raise GroundlabelError(
                f"Detection(s) #{', #'.join(map(str, missing))} have no label: choose one or drop them."
            )
        result = to_label_studio(review.kept(), self.config)
        task = self.task.id if task_id is None else task_id
        return self.pusher.push(task, result, kind, replace_older=replace_older), result

    def task_ids(self) -> list[int]:
        return [task.id for task in self.page.tasks] if self.page else []

    def task_name(self) -> str:
        return image_name(self.task.data.get(self.config.image_key)) if self.task else ""

    def task_url(self, task_id: int) -> str:
        """The task in Label Studio's data manager."""
        return f"{self.client.url}/projects/{self.project.id}/data?task={task_id}"

    def task_rows(self) -> list[list]:
        return [
            [task.id, image_name(task.data.get(self.config.image_key)), task.annotation_count, task.prediction_count]
            for task in (self.page.tasks if self.page else [])
        ]


def _concat(result: DetectionResult, xyxy: np.ndarray, label: str | None) -> DetectionResult:
    """``result`` with one more row: a box the reviewer made (score 1, its label as phrase, an empty mask)."""
    masks = (
        None
        if result.masks is None
        else np.concatenate([result.masks, np.zeros((1, result.height, result.width), dtype=bool)])
    )
    return replace(
        result,
        xyxy=np.concatenate([result.xyxy, xyxy]),
        scores=np.append(result.scores, 1.0),
        phrases=[*result.phrases, label or ""],
        prompt_phrases=[*result.prompt_phrases, label or ""],
        labels=[*result.labels, label],
        masks=masks,
    )


def image_name(reference: object) -> str:
    """A short name for a task's image reference: the file name of an upload, local file or URL."""
    if not isinstance(reference, str):
        return "(no image)"
    parts = urlsplit(reference)
    path = parse_qs(parts.query).get("d", [parts.path])[0]
    return path.rstrip("/").rsplit("/", 1)[-1] or reference


def describe_regions(result: LabelStudioResult) -> str:
    """'2 rectangles (cats, house), 2 brush masks (cats, house)': what a push carries."""
    by_type: dict[str, Counter] = {}
    for region in result.result:
        by_type.setdefault(region["type"], Counter()).update(region["value"].get(region["type"], []))
    parts = []
    for kind, labels in by_type.items():
        count = sum(labels.values())
        listed = ", ".join(f"{label} ×{n}" if n > 1 else label for label, n in labels.items())
        name = BY_TYPE[kind].name if kind in BY_TYPE else kind
        parts.append(f"{count} {name}{'s' * (count != 1)} ({listed})")
    return ", ".join(parts) or "no regions"
