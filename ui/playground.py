"""Playground tab: image + prompt -> rendered boxes (and masks), a detections table, a JSON download and the
image (and any more uploaded with it, under the same prompt and settings) as a COCO / YOLO / VOC dataset (zip).

Needs no Label Studio (it is also the Hugging Face Spaces demo). Threshold sliders re-filter the detector's cached
output, and a new prompt on the same image reuses the segmenter's embedding: both caches live in the pipeline,
keyed by the image's pixels, so the handlers only keep the last query.
"""

from __future__ import annotations

import html
from dataclasses import replace
from pathlib import Path

import gradio as gr
from gradio.media import get_image

from pipeline import load_image, parse_prompt, preview_scale, render_preview
from pipeline.export import FORMATS, DatasetItem
from pipeline.families import reads_text_threshold

from .controls import chosen_segmenter, detector_dropdown, output_controls, show_text_threshold, threshold_sliders
from .detections import (
    TABLE_HEADERS,
    Query,
    boxes_data,
    failure,
    notice,
    row_at,
    run_query,
    summary,
    table_rows,
    text_shown,
    write_dataset_zip,
    write_json,
)
from .models import ModelHub

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
        image, prompt, run, mode, segmenter, box, text, detector = input_column(hub, examples)
        (result_image, show_masks, message, table, download, dataset_format, make_dataset, more_images, dataset) = (
            output_column()
        )
    outputs = [last_query, result_image, message, table, download, dataset, model_status]

    def fail(error: Exception) -> tuple:
        return gr.skip(), gr.skip(), failure(error), gr.skip(), gr.skip(), gr.skip(), hub.status_markdown()

    def detect(
        upload,
        prompt_text,
        mode_value,
        segmenter_value,
        box_value,
        text_value,
        detector_value,
        masks_shown,
        progress=gr.Progress(track_tqdm=True),
    ):
        """Run the prompt on the image (the detector runs unless this image+prompt is cached)."""
        path = uploaded_path(upload)
        if not path:
            return cleared("Upload an image or pick an example.")
        try:
            parse_prompt(prompt_text)  # an empty prompt fails here, before any model loads
            query = Query(
                load_image(path, hub.lazy.settings.max_pixels),
                Path(path).name,
                prompt_text,
                chosen_segmenter(mode_value, segmenter_value),
                detector=detector_value or None,
            )
            return shown(hub, query, box_value, text_value, masks_shown, progress)
        except Exception as error:  # noqa: BLE001 - the UI boundary: every failure becomes a message
            return fail(error)

    def refilter(
        query,
        mode_value,
        segmenter_value,
        box_value,
        text_value,
        detector_value,
        masks_shown,
        progress=gr.Progress(track_tqdm=True),
        picked: tuple[float, float] | None = None,
    ):
        """Re-apply thresholds / output choice to the last query: cached detector output, no detector run (unless
        another detector was chosen)."""
        if query is None:
            return (gr.skip(),) * len(outputs)
        try:
            return shown(
                hub,
                replace(
                    query, segmenter=chosen_segmenter(mode_value, segmenter_value), detector=detector_value or None
                ),
                box_value,
                text_value,
                masks_shown,
                progress,
                picked,
            )
        except Exception as error:  # noqa: BLE001
            return fail(error)

    def pick(
        query,
        mode_value,
        segmenter_value,
        box_value,
        text_value,
        detector_value,
        masks_shown,
        evt: gr.SelectData,
        progress=gr.Progress(),
    ):
        """A click on the result: the box under it is highlighted and named (no model runs: the caches answer)."""
        if query is None:
            return (gr.skip(),) * len(outputs)
        scale = preview_scale(query.image.width, query.image.height)  # preview pixels -> image pixels
        return refilter(
            query,
            mode_value,
            segmenter_value,
            box_value,
            text_value,
            detector_value,
            masks_shown,
            progress,
            picked=(evt.index[0] / scale, evt.index[1] / scale),
        )

    def on_image(upload, prompt_text, *rest):
        """A new image runs the current prompt right away; without a prompt, it asks for one."""
        if upload and not prompt_text.strip():
            return cleared("Now type what to look for, then press Enter.")
        return detect(upload, prompt_text, *rest)

    inputs = [image, prompt, mode, segmenter, box, text, detector, show_masks]  # the image unprocessed: uploaded_path
    run.click(detect, inputs, outputs, concurrency_id="model", preprocess=False, api_name="playground_detect")
    prompt.submit(detect, inputs, outputs, concurrency_id="model", preprocess=False)
    image.change(on_image, inputs, outputs, concurrency_id="model", preprocess=False)
    refilter_inputs = [last_query, mode, segmenter, box, text, detector, show_masks]
    for control in (box, text):
        control.change(
            refilter, refilter_inputs, outputs, show_progress="minimal", trigger_mode="always_last", concurrency_limit=4
        )
    for control in (mode, segmenter, detector):
        control.input(refilter, refilter_inputs, outputs, concurrency_id="model")
    show_masks.input(refilter, refilter_inputs, outputs, show_progress="hidden", concurrency_limit=4)
    result_image.select(pick, refilter_inputs, outputs, show_progress="hidden", concurrency_limit=4).then(
        None, js=MARK_ROW_JS
    )
    make_dataset.click(
        dataset_handler(hub),
        [last_query, box, text, dataset_format, more_images],
        [dataset, message],
        concurrency_id="model",
    )


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


def shown(
    hub: ModelHub,
    query: Query,
    box: float,
    text: float,
    masks_shown: bool,
    progress: gr.Progress,
    picked: tuple[float, float] | None = None,
) -> tuple:
    """The playground's answer for ``query``: the result drawn (numbered as the table's rows; the box at image pixel
    ``picked``, if any, highlighted and named), its message, table and JSON, the model status."""
    result, seconds = run_query(hub, query, box, text, progress)
    selected = None if picked is None else row_at(result, *picked)
    rendered = render_preview(
        query.image, result, numbers=list(range(1, len(result) + 1)), selected=selected, show_masks=masks_shown
    )
    path = write_json(result, query, box, text)
    said = summary(result, query, seconds, box, text_shown(hub, query, text)) + boxes_data(result)
    if picked is not None:
        said += "<br>" + (
            selection_text(result, selected)
            if selected is not None
            else f"No box at ({picked[0]:.0f}, {picked[1]:.0f})."
        )
    return (
        query,
        rendered,
        said,
        table_rows(result),
        gr.DownloadButton(value=path, interactive=True),
        gr.File(value=None, visible=False),
        hub.status_markdown(),
    )


def selection_text(result, row: int) -> str:
    """ "#2 selected: dog 0.87, box (10, 20, 110, 220)"."""
    box = ", ".join(f"{v:.0f}" for v in result.xyxy[row])
    return f"#{row + 1} selected: {html.escape(result.display_labels()[row])} {result.scores[row]:.2f}, box ({box})"


def cleared(text: str) -> tuple:
    """The playground's outputs emptied, with ``text`` as the message."""
    return (
        None,
        None,
        notice(text, "info"),
        [],
        gr.DownloadButton(value=None, interactive=False),
        gr.File(value=None, visible=False),
        gr.skip(),
    )


def input_column(hub: ModelHub, examples: list[tuple[str, str]] | None) -> tuple:
    """The image, the prompt and Detect, then the output choice, thresholds and examples (on a phone these go
    below the result: theme.CSS). Returns (image, prompt, run, mode, segmenter, box, text, detector)."""
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
                info="Phrases separated by . or , (phrase:label names the label)",
                elem_id="pg-prompt",
            )
            run = gr.Button("Detect", variant="primary", scale=1, min_width=90, elem_id="pg-run")
        with gr.Column(elem_id="pg-controls"):
            mode, segmenter = output_controls("pg", hub.default_segmenter)
            box, text = threshold_sliders("pg", reads_text_threshold(hub.lazy.settings.detector))
            detector = detector_dropdown("pg", hub.lazy.settings.detector)
            show_text_threshold(text, detector, hub.lazy.settings.detector)
            examples = examples or [(str(get_image(name)), words) for name, words in EXAMPLES]
            # the prompt first: it is set before the image, whose change then runs it
            gr.Examples([[words, path] for path, words in examples], inputs=[prompt, image], label="Examples")
    return image, prompt, run, mode, segmenter, box, text, detector


def dataset_handler(hub: ModelHub):
    """*Make dataset*'s handler, for ``hub``."""

    def dataset_zip(query, box_value, text_value, fmt, more, progress=gr.Progress(track_tqdm=True)):
        """The shown result (from the caches: no model runs) and, with the same prompt and settings, each of
        ``more`` images, as one dataset in ``fmt``, zipped. An image that cannot be read is named and left out."""
        if query is None:
            return gr.skip(), notice("Detect something first: the dataset takes its prompt and settings.", "info")
        items, skipped = [], []
        for number, path in enumerate([None, *(more or [])]):
            progress((number, len(more or []) + 1), unit="images", desc="Labeling the dataset's images")
            try:
                image = query.image if path is None else load_image(path, hub.lazy.settings.max_pixels)
                name = query.name if path is None else Path(path).name
                result, _ = run_query(hub, replace(query, image=image, name=name), box_value, text_value, progress)
                items.append(DatasetItem(name, image, result))
            except Exception as error:  # noqa: BLE001 - the UI boundary: named in the message, the rest goes on
                skipped.append(f"{Path(path or query.name).name}: {error}")
        try:
            archive = write_dataset_zip(items, fmt)
        except Exception as error:  # noqa: BLE001
            return gr.skip(), failure(error)
        said = notice(
            f"{fmt} dataset of {len(items)} image{'s' * (len(items) != 1)}"
            + (f"; left out: {'; '.join(skipped)}" if skipped else "."),
            "error" if skipped else "ok",
        )
        return gr.File(value=archive, visible=True), said

    return dataset_zip
