"""Playground tab: image + prompt -> rendered boxes (and masks), a detections table, a JSON download and the
image (and any more uploaded with it, under the same prompt and settings) as a COCO / YOLO / VOC dataset (zip).

Needs no Label Studio (it is also the Hugging Face Spaces demo). Threshold sliders re-filter the detector's cached
output, and a new prompt on the same image reuses the segmenter's embedding: both caches live in the pipeline,
keyed by the image's pixels, so the handlers only keep the last query.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr
from gradio.media import get_image

from pipeline import DEFAULT_NMS_THRESHOLD, Options, load_image, parse_prompt, preview_scale, render_preview
from pipeline.export import FORMATS, DatasetItem
from pipeline.families import reads_text_threshold

from .controls import (
    chosen_options,
    detector_dropdown,
    label_thresholds_field,
    output_controls,
    show_text_threshold,
    threshold_sliders,
)
from .detections import (
    TABLE_HEADERS,
    Query,
    Updates,
    Values,
    boxes_data,
    guarded,
    notice,
    row_at,
    run_query,
    said,
    table_rows,
    write_dataset_zip,
    write_json,
)
from .models import ModelHub, ProgressFn

# The table row of the box a click selected (the message names it: "#2 selected") is marked.
MARK_ROW_JS = """() => {
  const picked = /#(\\d+) selected/.exec(document.querySelector("#pg-message").innerText);
  document.querySelectorAll("#pg-table [role=row]").forEach((row) => row.classList.toggle("gl-selected",
    Boolean(picked) && row.getAttribute("aria-rowindex") === String(Number(picked[1]) + 1)));
}"""
CANVAS_HELP = (
    "<div class='gl-keys'>Wheel: zoom · drag: pan · click a box: select it · "
    "pointer on a table row: its box outlined</div>"
)

# Gradio's bundled example photos, with prompts for them.
EXAMPLES = [("cheetah.jpg", "cheetah"), ("lion.jpg", "lion. rock"), ("tower.jpg", "tower. tree branch")]


def uploaded_path(upload: dict | None) -> str | None:
    """Where the server keeps an upload that reached the handler unprocessed (``preprocess=False``; Gradio still
    checks the path): Gradio's own preprocessing opens the file with Pillow and fails on a broken or huge one with
    its internals, where groundlabel's loader says what is wrong."""
    return (upload or {}).get("path")


def playground_tab(hub: ModelHub, model_status: gr.Markdown, examples: list[tuple[str, str]] | None = None) -> None:
    """Lay out the playground and wire its events; ``model_status`` is refreshed after every run. ``examples``
    are (image path, prompt) pairs, by default Gradio's example photos."""
    last_query = gr.State(None)
    with gr.Row(equal_height=False, elem_id="pg-layout"):
        tab = PlaygroundTab(hub, model_status, last_query, *input_column(hub, examples), *output_column())
    tab.wire()


@dataclass
class PlaygroundTab:
    """The playground's components (in the order ``input_column`` and ``output_column`` return them) and its event
    handlers, in the Label Studio tab's style: each handler answers ``{component: new value}`` for what it changes,
    and a failure becomes the message (``guarded``)."""

    hub: ModelHub
    model_status: gr.Markdown
    last_query: gr.State
    image: gr.Image
    prompt: gr.Textbox
    run: gr.Button
    mode: gr.Radio
    segmenter: gr.Dropdown
    box: gr.Slider
    text: gr.Slider
    nms: gr.Slider
    detector: gr.Dropdown
    label_thresholds: gr.Textbox
    result_image: gr.Image
    show_masks: gr.Checkbox
    message: gr.HTML
    table: gr.Dataframe
    download: gr.DownloadButton
    dataset_format: gr.Dropdown
    make_dataset: gr.Button
    more_images: gr.File
    dataset: gr.File

    @property
    def outputs(self) -> list:
        """Every component a handler may change."""
        return [
            self.last_query,
            self.result_image,
            self.message,
            self.table,
            self.download,
            self.dataset,
            self.model_status,
        ]

    @property
    def asking(self) -> set:
        """The inputs a re-run reads: the last query and the controls that make its options."""
        return {
            self.last_query,
            self.mode,
            self.segmenter,
            self.box,
            self.text,
            self.nms,
            self.detector,
            self.show_masks,
            self.label_thresholds,
        }

    def asked(self, values: Values) -> Options:
        """The options the output, threshold and detector controls ask for."""
        controls = (self.mode, self.segmenter, self.box, self.text, self.detector, self.nms, self.label_thresholds)
        return chosen_options(*(values[control] for control in controls))

    def wire(self) -> None:
        # Detect's inputs are positional, in this order: it is the page's "playground_detect" API call
        detecting = [self.image, self.prompt, self.mode, self.segmenter, self.box, self.text, self.detector]
        detecting += [self.show_masks, self.nms, self.label_thresholds]  # the image unprocessed: uploaded_path
        outputs, asking = self.outputs, self.asking
        self.run.click(
            self.on_detect, detecting, outputs, concurrency_id="model", preprocess=False, api_name="playground_detect"
        )
        self.prompt.submit(self.on_detect, detecting, outputs, concurrency_id="model", preprocess=False)
        self.image.change(self.on_image, detecting, outputs, concurrency_id="model", preprocess=False)
        for control in (self.box, self.text, self.nms):
            control.change(
                self.on_refilter,
                asking,
                outputs,
                show_progress="minimal",
                trigger_mode="always_last",
                concurrency_limit=4,
            )
        for control in (self.mode, self.segmenter, self.detector):
            control.input(self.on_refilter, asking, outputs, concurrency_id="model")
        self.label_thresholds.submit(self.on_refilter, asking, outputs, show_progress="minimal", concurrency_limit=4)
        self.show_masks.input(self.on_refilter, asking, outputs, show_progress="hidden", concurrency_limit=4)
        self.result_image.select(self.on_pick, asking, outputs, show_progress="hidden", concurrency_limit=4).then(
            None, js=MARK_ROW_JS
        )
        self.make_dataset.click(
            self.on_dataset,
            {*asking, self.dataset_format, self.more_images},
            [self.dataset, self.message, self.model_status],
            concurrency_id="model",
        )

    @guarded()
    def on_detect(
        self,
        upload: dict | None,
        prompt: str,
        mode: str,
        segmenter: str,
        box: float,
        text: float,
        detector: str,
        masks_shown: bool,
        nms: float = DEFAULT_NMS_THRESHOLD,
        label_thresholds: str = "",
        progress: gr.Progress = gr.Progress(track_tqdm=True),
    ) -> Updates:
        """Run the prompt on the image (the detector runs unless this image+prompt is cached)."""
        path = uploaded_path(upload)
        if not path:
            return self.cleared("Upload an image or pick an example.")
        parse_prompt(prompt)  # an empty prompt fails here, before any model loads
        options = chosen_options(mode, segmenter, box, text, detector, nms, label_thresholds)
        query = Query(load_image(path, self.hub.lazy.settings.max_pixels), Path(path).name, prompt, options)
        return self.shown(query, masks_shown, progress)

    def on_image(self, upload: dict | None, prompt: str, *rest) -> Updates:
        """A new image runs the current prompt right away; without a prompt, it asks for one."""
        if upload and not prompt.strip():
            return self.cleared("Now type what to look for, then press Enter.")
        return self.on_detect(upload, prompt, *rest)

    @guarded()
    def on_refilter(self, values: Values, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Updates:
        """Re-apply thresholds / output choice to the last query: cached detector output, no detector run (unless
        another detector was chosen)."""
        query = values[self.last_query]
        if query is None:
            return {self.message: gr.skip()}
        return self.shown(replace(query, options=self.asked(values)), values[self.show_masks], progress)

    @guarded()
    def on_pick(self, values: Values, evt: gr.SelectData, progress: gr.Progress = gr.Progress()) -> Updates:
        """A click on the result: the box under it is highlighted and named (no model runs: the caches answer)."""
        query = values[self.last_query]
        if query is None:
            return {self.message: gr.skip()}
        scale = preview_scale(query.image.width, query.image.height)  # preview pixels -> image pixels
        picked = (evt.index[0] / scale, evt.index[1] / scale)
        return self.shown(replace(query, options=self.asked(values)), values[self.show_masks], progress, picked)

    def shown(
        self, query: Query, masks_shown: bool, progress: ProgressFn, picked: tuple[float, float] | None = None
    ) -> Updates:
        """The answer for ``query``: the result drawn (numbered as the table's rows; the box at image pixel
        ``picked``, if any, highlighted and named), its message, table and JSON, the model status."""
        result, seconds = run_query(self.hub, query, progress)
        selected = None if picked is None else row_at(result, *picked)
        rendered = render_preview(
            query.image, result, numbers=list(range(1, len(result) + 1)), selected=selected, show_masks=masks_shown
        )
        message = said(self.hub, result, query, seconds) + boxes_data(result)
        if picked is not None:
            message += "<br>" + (
                selection_text(result, selected)
                if selected is not None
                else f"No box at ({picked[0]:.0f}, {picked[1]:.0f})."
            )
        return {
            self.last_query: query,
            self.result_image: rendered,
            self.message: message,
            self.table: table_rows(result),
            self.download: gr.DownloadButton(value=write_json(result, query), interactive=True),
            self.dataset: gr.File(value=None, visible=False),
            self.model_status: self.hub.status_markdown(),
        }

    def cleared(self, text: str) -> Updates:
        """The outputs emptied, with ``text`` as the message."""
        return {
            self.last_query: None,
            self.result_image: None,
            self.message: notice(text, "info"),
            self.table: [],
            self.download: gr.DownloadButton(value=None, interactive=False),
            self.dataset: gr.File(value=None, visible=False),
        }

    @guarded()
    def on_dataset(self, values: Values, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Updates:
        """The shown result (from the caches: no model runs) and, with the same prompt and settings, each of the
        more images, as one dataset in the chosen format, zipped. An image that cannot be read is named and left
        out."""
        query, fmt, more = values[self.last_query], values[self.dataset_format], values[self.more_images] or []
        if query is None:
            return {self.message: notice("Detect something first: the dataset takes its prompt and settings.", "info")}
        options = replace(
            query.options,
            box_threshold=values[self.box],
            text_threshold=values[self.text],
            nms_threshold=values[self.nms],
            label_thresholds=values[self.label_thresholds] or (),
        )
        items, skipped = [], []
        for number, path in enumerate([None, *more]):
            progress((number, len(more) + 1), unit="images", desc="Labeling the dataset's images")
            try:
                image = query.image if path is None else load_image(path, self.hub.lazy.settings.max_pixels)
                name = query.name if path is None else Path(path).name
                result, _ = run_query(self.hub, replace(query, image=image, name=name, options=options), progress)
                items.append(DatasetItem(name, image, result))
            except Exception as error:  # noqa: BLE001 - the UI boundary: named in the message, the rest goes on
                skipped.append(f"{Path(path or query.name).name}: {error}")
        archive = write_dataset_zip(items, fmt)
        message = notice(
            f"{fmt} dataset of {len(items)} image{'s' * (len(items) != 1)}"
            + (f"; left out: {'; '.join(skipped)}" if skipped else "."),
            "error" if skipped else "ok",
        )
        return {self.dataset: gr.File(value=archive, visible=True), self.message: message}


def output_column() -> tuple:
    """The result (image, masks toggle, message, table), its downloads and the dataset maker. Returns (result image,
    show masks, message, table, download, dataset format, make dataset, more images, dataset)."""
    with gr.Column(scale=6, min_width=480, elem_id="pg-output"):
        # no label over the image: it would hide the tags of boxes at its top edge
        result_image = gr.Image(
            label="Result",
            show_label=False,
            type="pil",
            format="jpeg",
            interactive=False,
            height=420,
            buttons=["download", "fullscreen"],
            elem_id="pg-result",
        )
        with gr.Row(equal_height=True):
            show_masks = gr.Checkbox(
                True, label="Show masks", container=False, scale=0, min_width=130, elem_id="pg-show-masks"
            )
            gr.HTML(CANVAS_HELP, elem_id="pg-canvas-help")
        message = gr.HTML(elem_id="pg-message")
        table = gr.Dataframe(
            headers=TABLE_HEADERS,
            interactive=False,
            max_height=200,
            elem_id="pg-table",
            column_widths=["8%", "22%", "30%", "12%", "28%"],
        )
        with gr.Row(equal_height=True):
            download = gr.DownloadButton("Download JSON", interactive=False, size="md", elem_id="pg-download")
            dataset_format = gr.Dropdown(
                list(FORMATS), value="coco", label="Dataset format", show_label=False, min_width=90, elem_id="pg-format"
            )
            make_dataset = gr.Button("Make dataset", size="md", elem_id="pg-make-dataset")
        more_images = gr.File(
            label="More images for the dataset (optional: same prompt and settings)",
            file_count="multiple",
            file_types=["image"],
            height=120,
            elem_id="pg-more-images",
        )
        dataset = gr.File(label="Dataset (zip)", interactive=False, visible=False, elem_id="pg-dataset")
    return result_image, show_masks, message, table, download, dataset_format, make_dataset, more_images, dataset


def selection_text(result, row: int) -> str:
    """ "#2 selected: dog 0.87, box (10, 20, 110, 220)"."""
    box = ", ".join(f"{v:.0f}" for v in result.xyxy[row])
    return f"#{row + 1} selected: {html.escape(result.display_labels()[row])} {result.scores[row]:.2f}, box ({box})"


def input_column(hub: ModelHub, examples: list[tuple[str, str]] | None) -> tuple:
    """The image, the prompt and Detect, then the output choice, thresholds and examples (on a phone these go
    below the result: theme.CSS). Returns (image, prompt, run, mode, segmenter, box, text, nms, detector, per-label
    thresholds)."""
    with gr.Column(scale=5, min_width=480, elem_id="pg-input"):
        image = gr.Image(
            label="Image",
            type="filepath",
            image_mode=None,
            sources=["upload", "clipboard"],
            height=230,
            elem_id="pg-image",
        )
        with gr.Row(equal_height=True, elem_classes="gl-prompt-row"):
            prompt = gr.Textbox(
                label="Prompt",
                placeholder="dog. possum on a fence",
                max_lines=2,
                scale=4,
                info="Phrases separated by . or , (phrase:label names the label, phrase@0.4 its box threshold)",
                elem_id="pg-prompt",
            )
            run = gr.Button("Detect", variant="primary", scale=1, min_width=90, elem_id="pg-run")
        with gr.Column(elem_id="pg-controls"):
            mode, segmenter = output_controls("pg", hub.default_segmenter)
            box, text, nms = threshold_sliders("pg", reads_text_threshold(hub.lazy.settings.detector))
            label_thresholds = label_thresholds_field("pg")
            detector = detector_dropdown("pg", hub.lazy.settings.detector)
            show_text_threshold(text, detector, hub.lazy.settings.detector)
            examples = examples or [(str(get_image(name)), words) for name, words in EXAMPLES]
            # the prompt first: it is set before the image, whose change then runs it
            gr.Examples([[words, path] for path, words in examples], inputs=[prompt, image], label="Examples")
    return image, prompt, run, mode, segmenter, box, text, nms, detector, label_thresholds
