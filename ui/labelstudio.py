"""Label Studio tab: connect, pick a project and a task, prompt, review each detection, push, next task.

The token stays on the server: the browser never receives the one from the environment (the field only says it
is set), and that one is sent only to the Label Studio URL it was configured for. A push Label Studio cannot take
(down, 401) waits in the on-disk outbox; "Retry outbox" or the next successful push delivers it.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import gradio as gr
from gradio_image_annotation import image_annotator

from pipeline import MaskPrompt, Options
from pipeline.families import reads_text_threshold
from sync import BackendSettings, LabelStudioClient, Outbox, Project, Pusher, SyncError
from sync.outcomes import OutcomePolicy
from sync.prelabel import PrelabelJob, PrelabelProgress, prelabel
from sync.quality import ROW_HEADERS, apply_thresholds, quality_report

from .controls import (
    BOXES,
    MASKS,
    chosen_options,
    chosen_segmenter,
    detector_dropdown,
    label_thresholds_field,
    output_controls,
    show_text_threshold,
    threshold_sliders,
)
from .detections import Updates, Values, boxes_data, failure, guarded, notice, run_query, said
from .models import ModelHub, ProgressFn
from .review import Review, Workspace, describe_regions

TASK_HEADERS = ["task", "image", "ann.", "pred."]
KEYS_HELP = (
    "<div class='gl-keys'>Image: wheel zooms, drag pans, a click does what “A click” says (a "
    "shift-click or right click removes); the pointer on a row outlines its box. Keys (outside text "
    "fields): <kbd>↑</kbd>/<kbd>↓</kbd> choose a detection · "
    "<kbd>1</kbd>-<kbd>9</kbd> its label · <kbd>x</kbd> drop it · <kbd>z</kbd> undo its last click · "
    "<kbd>Enter</kbd> push and open the next task</div>"
)
NEW_OBJECT, SELECTS, ADDS, REMOVES = "a new object", "selects a box", "adds to it", "removes from it"
_FALLBACK = (255, 165, 0)  # the editor's colour for a label the config gives none
NO_TASK = "<div class='gl-task'>Click a task in the list to open it.</div>"
# The chosen detection's review row is marked at once (the rows are drawn again only for a new review).
MARK_ROW_JS = """(target) => {
  document.querySelectorAll("#ls-review .gl-review-row").forEach((row) => row.classList.toggle("gl-selected",
    Boolean(row.querySelector(`#ls-keep-${target}`))));
}"""


def labelstudio_tab(hub: ModelHub, model_status: gr.Markdown, settings: BackendSettings) -> None:
    """Lay out the Label Studio tab and wire its events; ``model_status`` is refreshed after model runs."""
    layout(hub, model_status, settings).wire()


@dataclass
class LabelStudioTab:
    """The tab's components and its event handlers. Each handler answers ``{component: new value}`` for the
    components it changes (never an empty dict: Gradio reads that as one missing value per output)."""

    hub: ModelHub
    settings: BackendSettings
    model_status: gr.Markdown
    workspace: gr.State
    review: gr.State
    url: gr.Textbox
    token: gr.Textbox
    connect: gr.Button
    connection: gr.HTML
    project: gr.Dropdown
    chips: gr.CheckboxGroup
    unlabeled: gr.Checkbox
    by_score: gr.Checkbox
    tasks: gr.Dataframe
    previous_page: gr.Button
    pager: gr.HTML
    next_page: gr.Button
    retry: gr.Button
    prelabel_all: gr.Button
    cancel_prelabel: gr.Button
    quality: gr.Button
    quality_table: gr.Dataframe
    apply_thresholds: gr.Button
    header: gr.HTML
    prompt: gr.Textbox
    detect: gr.Button
    preview: gr.Image
    result_info: gr.HTML
    mode: gr.Radio
    segmenter: gr.Dropdown
    box: gr.Slider
    text: gr.Slider
    nms: gr.Slider
    label_thresholds: gr.Textbox
    detector: gr.Dropdown
    kind: gr.Radio
    editor: image_annotator
    preview_tab: gr.Tab
    edit_tab: gr.Tab
    apply_edits: gr.Button
    key: gr.Textbox
    key_go: gr.Button
    repair_target: gr.Dropdown
    click_kind: gr.Radio
    click_negative: gr.Textbox
    undo_click: gr.Button
    show_masks: gr.Checkbox
    replace: gr.Checkbox
    push: gr.Button
    skip: gr.Button
    message: gr.HTML
    kept_info: gr.HTML
    keep_label: gr.Dropdown
    keep_above: gr.Number
    keep_go: gr.Button

    @property
    def outputs(self) -> list:
        """Every component a handler may change."""
        return [
            self.workspace,
            self.review,
            self.connection,
            self.project,
            self.chips,
            self.tasks,
            self.pager,
            self.header,
            self.preview,
            self.prompt,
            self.mode,
            self.result_info,
            self.kept_info,
            self.message,
            self.model_status,
            self.editor,
            self.repair_target,
            self.label_thresholds,
            self.keep_label,
        ]

    @property
    def asking(self) -> set:
        """The inputs ``asked`` reads: the open workspace, the prompt and the controls that make the options."""
        return {
            self.workspace,
            self.prompt,
            self.mode,
            self.segmenter,
            self.box,
            self.text,
            self.nms,
            self.label_thresholds,
        }

    def asked(self, values: Values) -> tuple[str, Options]:
        """The prompt and the options the tab's controls ask for (the detector is the workspace's choice)."""
        ws = values[self.workspace]
        options = chosen_options(
            values[self.mode],
            values[self.segmenter],
            values[self.box],
            values[self.text],
            ws and ws.detector,
            values[self.nms],
            values[self.label_thresholds],
        )
        return values[self.prompt], options

    def wire(self) -> None:
        everything, asking = self.outputs, self.asking
        connecting = [self.url, self.token, self.workspace, self.detector]
        self.connect.click(self.on_connect, connecting, everything)
        self.token.submit(self.on_connect, connecting, everything)
        self.project.input(self.on_project, [self.workspace, self.project, self.unlabeled], everything)
        self.unlabeled.input(self.on_filter, [self.workspace, self.unlabeled], everything)
        self.by_score.input(self.on_sort, [self.workspace, self.by_score], everything)
        self.previous_page.click(self.on_previous_page, [self.workspace], everything)
        self.next_page.click(self.on_next_page, [self.workspace], everything)
        self.chips.input(lambda ticked: ". ".join(ticked), self.chips, self.prompt)
        self.tasks.select(self.on_task_click, asking, everything, concurrency_id="model")
        self.detect.click(self.on_detect, asking, everything, concurrency_id="model")
        self.prompt.submit(self.on_detect, asking, everything, concurrency_id="model")
        for control in (self.box, self.text, self.nms):
            control.change(
                self.on_refilter,
                asking,
                everything,
                show_progress="minimal",
                trigger_mode="always_last",
                concurrency_limit=4,
            )
        for control in (self.mode, self.segmenter):
            control.input(self.on_refilter, asking, everything, concurrency_id="model")
        self.label_thresholds.submit(self.on_refilter, asking, everything, show_progress="minimal")
        self.detector.input(self.on_detector, {self.detector, *asking}, everything, concurrency_id="model")
        pushing = {*asking, self.review, self.kind, self.replace}
        self.push.click(self.on_push, pushing, everything, concurrency_id="model")
        self.skip.click(self.on_skip, asking, everything, concurrency_id="model")
        repair = {self.workspace, self.review, self.repair_target, self.segmenter}
        self.preview.select(
            self.on_preview_click, {*repair, self.click_kind, self.click_negative}, everything, concurrency_id="model"
        )
        self.undo_click.click(self.on_undo_click, repair, everything, concurrency_id="model")
        chosen = [self.workspace, self.review, self.repair_target]
        self.repair_target.input(self.on_choose, chosen, everything, show_progress="hidden")
        self.repair_target.change(None, [self.repair_target], None, js=MARK_ROW_JS)
        self.show_masks.input(self.on_show_masks, [*chosen, self.show_masks], everything, show_progress="hidden")
        self.key_go.click(
            self.on_key,
            {*repair, *pushing, self.key},
            everything,
            concurrency_id="model",
            show_progress="hidden",
        )
        self.apply_edits.click(
            self.on_edit_boxes,
            {self.workspace, self.review, self.editor, self.mode, self.segmenter},
            everything,
            concurrency_id="model",
        )
        self.retry.click(self.on_retry, [self.workspace], everything)
        # the box editor's image is sent only while its tab is shown (at 24 MP it costs a second per answer)
        self.edit_tab.select(self.on_edit_tab, [self.workspace, self.review], everything, show_progress="hidden")
        self.preview_tab.select(self.on_preview_tab, [self.workspace], everything, show_progress="hidden")
        # Pre-annotation has its own queue, one run at a time, and one progress display: Detect, clicks and pushes
        # (the "model" queue) never wait behind it. Cancel answers at once and stops it after the current task.
        self.prelabel_all.click(
            self.on_prelabel,
            {*asking, self.replace},
            everything,
            concurrency_id="prelabel",
            concurrency_limit=1,
            show_progress_on=[self.message],
        )
        self.cancel_prelabel.click(
            self.on_cancel_prelabel, [self.workspace], [self.message, self.model_status], queue=False
        )
        self.quality.click(self.on_quality, [self.workspace], [self.message, self.model_status, self.quality_table])
        self.apply_thresholds.click(self.on_apply_thresholds, [self.workspace], everything)
        self.keep_go.click(
            self.on_keep_above,
            [self.workspace, self.review, self.keep_label, self.keep_above],
            everything,
            show_progress="hidden",
        )

    # --- pieces of answers ------------------------------------------------------------------------------------

    def say(self, text: str, kind: str = "info") -> Updates:
        return {self.message: notice(text, kind)}

    def task_list(self, ws: Workspace) -> Updates:
        page = ws.page
        text = f"Page {page.page} of {page.pages} · {page.total} task{'s' * (page.total != 1)}"
        return {self.tasks: ws.task_rows(), self.pager: f"<div class='gl-pager'>{text}</div>"}

    def run(self, ws: Workspace, progress: ProgressFn) -> Updates:
        """The open task's query run: a new review and the run's message."""
        result, seconds = run_query(self.hub, ws.query, progress)
        current = Review.of(ws.query.image, result)
        message = said(self.hub, result, ws.query, seconds)
        return self.show_review(ws, current) | {
            self.result_info: message,
            self.model_status: self.hub.status_markdown(),
        }

    def show_review(
        self, ws: Workspace, current: Review, target: str = NEW_OBJECT, boxes_changed: bool = True
    ) -> Updates:
        """A new review: the preview of what will be pushed, its rows, and the box editor with the kept boxes in the
        project's label colours."""
        rows = [
            (f"#{i + 1} {label or phrase}", str(i))
            for i, (label, phrase, keep) in enumerate(zip(current.labels, current.result.prompt_phrases, current.keep))
            if keep
        ]
        return {
            self.workspace: ws,
            self.review: current,
            self.preview: preview(ws, current, target),
            self.kept_info: kept_text(current),
            self.editor: box_editor(ws, current) if boxes_changed and ws.editing else gr.skip(),
            self.repair_target: gr.Dropdown([NEW_OBJECT, *rows], value=target),
        }

    def open_task(self, ws: Workspace, task_id: int, prompt: str, options: Options, progress: ProgressFn) -> Updates:
        progress(0.02, desc=f"Fetching task {task_id}")
        query = ws.open(task_id, prompt, options)
        ids = ws.task_ids()
        where = f" · {ids.index(task_id) + 1} of {len(ids)} on this page" if task_id in ids else ""
        updates = {
            self.header: f"<div class='gl-task'><strong>Task #{task_id}</strong> · "
            f"{html.escape(ws.task_name())} · {task_link(ws, task_id, 'open in Label Studio')}"
            f"{where}</div>"
        }
        if query.prompt.strip():
            return updates | self.run(ws, progress)
        return updates | {
            self.workspace: ws,
            self.review: None,
            self.editor: None,
            self.preview: query.image.pil,
            self.kept_info: "",
            self.result_info: notice("Type what to look for, then press Enter.", "info"),
        }

    def turn_page(self, ws: Workspace | None, step: int) -> Updates:
        if ws is None or ws.page is None:
            return self.say("Connect and pick a project first: then the arrows turn its task pages.")
        ws.load_page(min(max(1, ws.page.page + step), ws.page.pages))
        return self.task_list(ws)

    def advance(self, ws: Workspace, done: str, prompt: str, options: Options, progress: ProgressFn) -> Updates:
        """Open the task after the current one; ``done`` (what just happened) stays in the message box."""
        try:
            next_id = ws.next_task_id()
            ws.load_page(ws.page.page)
            counts = self.project_counts(ws)
        except SyncError as error:
            return {self.workspace: ws, self.message: done + failure(error)}
        if next_id is None:
            return (
                self.task_list(ws)
                | counts
                | {
                    self.workspace: ws,
                    self.review: None,
                    self.editor: None,
                    self.preview: None,
                    self.header: NO_TASK,
                    self.kept_info: "",
                    self.result_info: "",
                    self.message: done + notice("No more tasks in this list.", "info"),
                }
            )
        try:
            opened = self.open_task(ws, next_id, prompt, options, progress)
        except Exception as error:  # noqa: BLE001 - keep the report of the push, add why the next task did not open
            return self.task_list(ws) | counts | {self.workspace: ws, self.message: done + failure(error)}
        return self.task_list(ws) | counts | opened | {self.message: done}

    def project_counts(self, ws: Workspace) -> Updates:
        """The project list again, so its "n/m labeled" counts include what was just pushed."""
        return {self.project: gr.Dropdown(choices=project_choices(ws.client.projects()), value=ws.project.id)}

    # --- handlers ------------------------------------------------------------------------------------------------

    @guarded("connection")
    def on_connect(self, url: str, token: str, old: Workspace | None, detector: str) -> Updates:
        client = LabelStudioClient(
            url,
            token or env_token_for(url, self.settings),
            timeout=self.settings.timeout,
            max_image_bytes=self.settings.max_image_bytes,
            addresses=self.settings.addresses,
        )
        try:
            user = client.whoami()
            projects = client.projects()
        except SyncError:
            client.close()
            raise  # the previous connection, if any, stays usable
        if old is not None:
            old.close()
        ws = Workspace(
            client,
            Pusher(client, Outbox(self.settings.outbox_dir)),
            user=user.get("email") or user.get("username") or "",
            max_pixels=self.settings.pipeline.max_pixels,
            detector=detector or None,
        )
        waiting = ws.pusher.pending
        text = f"Connected as {ws.user} · {len(projects)} project{'s' * (len(projects) != 1)}" + (
            f" · {waiting} push(es) wait in the outbox: Retry outbox sends them." if waiting else ""
        )
        return {
            self.workspace: ws,
            self.connection: notice(text, "ok"),
            self.message: "",
            self.project: gr.Dropdown(choices=project_choices(projects), value=None),
        }

    @guarded()
    def on_project(self, ws: Workspace | None, project_id: int | None, unlabeled_only: bool) -> Updates:
        if ws is None or project_id is None:
            return self.say("Connect to Label Studio first.")
        config = ws.choose_project(int(project_id), unlabeled_only)
        return self.task_list(ws) | {
            self.workspace: ws,
            self.chips: gr.CheckboxGroup(choices=config.labels, value=config.labels),
            self.prompt: config.default_prompt,
            self.mode: MASKS if config.wants_masks else BOXES,
            self.label_thresholds: thresholds_text(config.label_thresholds),
            self.keep_label: gr.Dropdown(choices=config.labels, value=config.labels[0]),
            self.review: None,
            self.editor: None,
            self.preview: None,
            self.header: NO_TASK,
            self.kept_info: "",
            self.result_info: "",
            self.message: "",
        }

    @guarded()
    def on_filter(self, ws: Workspace | None, unlabeled_only: bool) -> Updates:
        if ws is None or ws.project is None:
            return self.say("Pick a project first: the filter applies to its task list.")
        ws.unlabeled_only = unlabeled_only
        ws.load_page(1)
        return self.task_list(ws)

    @guarded()
    def on_sort(self, ws: Workspace | None, by_score: bool) -> Updates:
        """The task list by prediction score, lowest first (the tasks most likely to need a fix), or as imported."""
        if ws is None or ws.project is None:
            return self.say("Pick a project first: the order applies to its task list.")
        ws.by_score = by_score
        ws.load_page(1)
        return self.task_list(ws)

    @guarded()
    def on_previous_page(self, ws: Workspace | None) -> Updates:
        return self.turn_page(ws, -1)

    @guarded()
    def on_next_page(self, ws: Workspace | None) -> Updates:
        return self.turn_page(ws, +1)

    @guarded()
    def on_task_click(
        self, values: Values, evt: gr.SelectData, progress: gr.Progress = gr.Progress(track_tqdm=True)
    ) -> Updates:
        ws = values[self.workspace]
        if ws is None or ws.page is None:
            return self.say("Connect and pick a project first.")
        return self.open_task(ws, int(evt.row_value[0]), *self.asked(values), progress) | {self.message: ""}

    @guarded()
    def on_detect(self, values: Values, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Updates:
        ws = values[self.workspace]
        if ws is None or ws.query is None:
            return self.say("Open a task first (click it in the list).")
        prompt, options = self.asked(values)
        ws.query = replace(ws.query, prompt=prompt, options=options)
        return self.run(ws, progress) | {self.message: ""}

    @guarded()
    def on_refilter(self, values: Values, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Updates:
        """The open task's result under the thresholds, output and detector now chosen (the prompt stays)."""
        ws = values[self.workspace]
        if ws is None or ws.query is None or not ws.query.prompt.strip():
            return {self.message: gr.skip()}  # nothing shown yet: the choice applies to the next detection
        ws.query = replace(ws.query, options=self.asked(values)[1])
        return self.run(ws, progress)

    def decoder(self, ws: Workspace, segmenter: str, progress: ProgressFn) -> Callable[[MaskPrompt], Any]:
        """One mask for a prompt on the open task's image: the decoder only, once its embedding is cached."""
        model = self.hub.load(segmenter, progress).segmenters.get(segmenter)
        return lambda prompt: model.decode(ws.query.image, [prompt])[0]

    @guarded()
    def on_preview_click(self, values: Values, evt: gr.SelectData, progress: gr.Progress = gr.Progress()) -> Updates:
        """A click on what will be pushed: a point on (or off) the chosen detection's object, or a new object. A
        shift-click or a right click (``negative``, set by the page's script) removes, whatever "A click" says."""
        ws, current, target, kind = (
            values[c] for c in (self.workspace, self.review, self.repair_target, self.click_kind)
        )
        if values[self.click_negative] == "negative" and kind != SELECTS:
            kind = REMOVES
        if ws is None or current is None or ws.query is None:
            return self.say("Open a task and detect first: then a click on the image repairs a mask.")
        row = None if target in (None, NEW_OBJECT) else int(target)
        x, y = (round(v / current.preview_scale) for v in evt.index)  # preview pixels -> image pixels
        if kind == SELECTS:
            hit = current.row_at(x, y)
            if hit is None:
                return self.say(f"No kept box at ({x}, {y}): click inside one to select it.")
            return self.show_review(ws, current, str(hit), boxes_changed=False) | self.say(
                f"#{hit + 1} selected ({current.labels[hit] or current.result.phrases[hit]}): keys and clicks now act "
                "on it.",
                "ok",
            )
        label = ws.config.labels[0] if row is None else None
        decode = self.decoder(ws, values[self.segmenter], progress)
        changed = current.click(row, x, y, kind != REMOVES, label, decode)
        number = len(changed.result) if row is None else row + 1
        what = "new object" if row is None else f"click {len(changed.clicks[row])}"
        moved = row is None or row in changed.from_clicks  # a box made from clicks follows its mask
        return self.show_review(ws, changed, str(number - 1), boxes_changed=moved) | self.say(
            f"#{number}: {what} at ({x}, {y}); its mask has {int(changed.result.masks[number - 1].sum())} pixels.", "ok"
        )

    @guarded()
    def on_key(self, values: Values, progress: gr.Progress = gr.Progress()) -> Updates:
        """A keyboard shortcut (KEYS_HELP) on the chosen detection (the "A click repairs" choice)."""
        ws, current, target = values[self.workspace], values[self.review], values[self.repair_target]
        key = values[self.key] or ""
        if ws is None or current is None:
            return self.say("Open a task and detect first: the keys act on its detections.")
        if key == "Enter":
            return self.on_push(values, progress)
        kept = [i for i, keep in enumerate(current.keep) if keep]
        row = None if target in (None, NEW_OBJECT) else int(target)
        if key in ("ArrowDown", "ArrowUp"):
            if not kept:
                return self.say("Nothing is kept: no detection to choose.")
            step = 1 if key == "ArrowDown" else -1
            at = kept.index(row) + step if row in kept else (0 if step > 0 else -1)
            return self.show_review(ws, current, str(kept[at % len(kept)]), boxes_changed=False)
        if row is None:
            return self.say("Choose a detection first (↑/↓ or the \u201cA click repairs\u201d menu).")
        if key in ("x", "X"):
            changed = current.dropped(row)
            later = [i for i in kept if i > row] or [i for i in kept if i < row]
            return self.show_review(ws, changed, str(later[0]) if later else NEW_OBJECT) | self.say(
                f"#{row + 1} dropped.", "ok"
            )
        if key in ("z", "Z"):
            return self.on_undo_click(values, progress)
        labels = ws.config.labels
        if key.isdigit() and 1 <= int(key) <= len(labels):
            changed = current.relabeled(row, labels[int(key) - 1])
            return self.show_review(ws, changed, target) | self.say(f"#{row + 1} is now {labels[int(key) - 1]}.", "ok")
        return self.say(f"No label {key}: the project has {len(labels)}.")

    @guarded()
    def on_keep_above(
        self, ws: Workspace | None, current: Review | None, label: str | None, threshold: float | None
    ) -> Updates:
        """Keep the open task's detections of ``label`` scored above ``threshold``, drop its others."""
        if ws is None or current is None or not label or threshold is None:
            return self.say("Open a task, then pick a label and a score.")
        changed = current.kept_above(label, float(threshold))
        mine = [i for i, name in enumerate(changed.labels) if name == label]
        kept = sum(changed.keep[i] for i in mine)
        text = f"{label}: {kept} of {len(mine)} kept (scored above {float(threshold):g})."
        return self.show_review(ws, changed) | self.say(text, "ok")

    @guarded()
    def on_edit_tab(self, ws: Workspace | None, current: Review | None) -> Updates:
        if ws is None:
            return {self.message: gr.skip()}
        ws.editing = True
        return {self.editor: box_editor(ws, current) if current is not None else None}

    @guarded()
    def on_preview_tab(self, ws: Workspace | None) -> Updates:
        if ws is not None:
            ws.editing = False
        return {self.message: gr.skip()}

    @guarded()
    def on_choose(self, ws: Workspace | None, current: Review | None, target: str) -> Updates:
        """A detection chosen in the menu: the preview highlights it."""
        if ws is None or current is None:
            return {self.message: gr.skip()}
        return {self.preview: preview(ws, current, target)}

    @guarded()
    def on_show_masks(self, ws: Workspace | None, current: Review | None, target: str, show: bool) -> Updates:
        """Masks shown or hidden on the preview (what is pushed does not change)."""
        if ws is None:
            return {self.message: gr.skip()}
        ws.show_masks = show
        return {self.preview: preview(ws, current, target)} if current is not None else {self.message: gr.skip()}

    @guarded()
    def on_undo_click(self, values: Values, progress: gr.Progress = gr.Progress()) -> Updates:
        ws, current, target = values[self.workspace], values[self.review], values[self.repair_target]
        if ws is None or current is None or target in (None, NEW_OBJECT):
            return self.say("Choose the detection whose last click to undo.")
        changed = current.undo_click(int(target), self.decoder(ws, values[self.segmenter], progress))
        moved = int(target) in changed.from_clicks
        return self.show_review(ws, changed, target, boxes_changed=moved) | self.say(
            f"#{int(target) + 1}: last click undone.", "ok"
        )

    @guarded()
    def on_edit_boxes(self, values: Values, progress: gr.Progress = gr.Progress()) -> Updates:
        """The editor's boxes become what will be pushed; moved and drawn boxes get new masks (decoder only: the
        task's image embedding is cached) when masks are shown."""
        ws, current, edited = values[self.workspace], values[self.review], values[self.editor]
        if ws is None or current is None or ws.query is None or edited is None:
            return self.say("Open a task and detect first: the editor shows its boxes.")
        name = chosen_segmenter(values[self.mode], values[self.segmenter])
        masks_for = None
        if name:
            segmenter_model = self.hub.load(name, progress).segmenters.get(name)
            masks_for = lambda boxes: segmenter_model.decode(  # noqa: E731
                ws.query.image, [MaskPrompt.from_box(box) for box in boxes]
            )
        changed = current.edit(edited.get("boxes") or [], masks_for)
        return self.show_review(ws, changed) | self.say(
            f"{len(changed.result)} box{'es' * (len(changed.result) != 1)} will be pushed, as edited.", "ok"
        )

    @guarded()
    def on_detector(self, values: Values, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Updates:
        """Detect with another detector from now on: the open task's result at once (its first use loads it)."""
        ws = values[self.workspace]
        if ws is None:
            return {self.message: gr.skip()}  # read again when connecting
        ws.detector = values[self.detector] or None
        return self.on_refilter(values, progress)

    @guarded()
    def on_push(self, values: Values, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Updates:
        ws, current, kind = values[self.workspace], values[self.review], values[self.kind]
        if ws is None or ws.task is None or current is None:
            return self.say("Open a task and detect first.")
        task_id = ws.task.id
        # a delivered push also delivers what waited in the outbox
        outcome, sent = ws.push(current, kind, replace_older=values[self.replace])
        link = task_link(ws, task_id, f"task #{task_id}")
        if outcome.status == "queued":
            done = (
                f"<div class='gl-notice gl-error'>Label Studio did not take the {kind} for {link}: "
                f"{html.escape(outcome.error or '')} It is kept in the outbox ({ws.pusher.pending} waiting); "
                "Retry outbox sends it.</div>"
            )
        else:
            verb = "Pushed" if outcome.status == "created" else "Already in Label Studio:"
            done = (
                f"<div class='gl-notice gl-ok'>{verb} {kind} #{outcome.id} to {link}: "
                f"{html.escape(describe_regions(sent))}.</div>"
            )
        return self.advance(ws, done, *self.asked(values), progress)

    @guarded()
    def on_skip(self, values: Values, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Updates:
        ws = values[self.workspace]
        if ws is None or ws.page is None:
            return self.say("Pick a project first.")
        return self.advance(ws, "", *self.asked(values), progress)

    @guarded()
    def on_retry(self, ws: Workspace | None, progress: gr.Progress = gr.Progress()) -> Updates:
        if ws is None:
            return self.say("Connect first: the outbox is kept per Label Studio URL.")
        progress(0.1, desc=f"Sending {ws.pusher.pending} waiting push(es)")
        sent = sum(item.status != "queued" for item in ws.pusher.flush())
        left = ws.pusher.pending
        return self.say(f"Outbox: {sent} delivered, {left} still waiting.", "error" if left else "ok")

    @guarded()
    def on_prelabel(self, values: Values, progress: gr.Progress = gr.Progress()) -> Updates:
        """Predictions for every task of the project (only unlabeled ones when so filtered), as sync.prelabel makes
        them: prefetched images, batched writes, tasks already predicted by this setup skipped."""
        ws = values[self.workspace]
        if ws is None or ws.project is None:
            return self.say("Pick a project first.")
        prompt, options = self.asked(values)
        pipeline = self.hub.load(options.segmenter, progress, detector=options.detector)
        job = PrelabelJob(
            ws.project.id,
            prompt or None,
            options,
            only_unlabeled=ws.unlabeled_only,
            write_bytes=self.settings.write_batch_bytes,
            replace_older=values[self.replace],
        )
        outcomes = OutcomePolicy(self.settings.state_dir, self.settings.max_retries)  # the ML backend's counts

        def show(state: PrelabelProgress) -> None:
            if state.total:
                progress(
                    (state.finished, state.total),
                    unit="tasks",
                    desc=f"Pre-annotating: {state.done} done, {state.skipped} skipped, {len(state.failed)} failed",
                )

        ws.stop_prelabel.clear()
        state = prelabel(ws.client, pipeline, job, ws.pusher.outbox, show, stop=ws.stop_prelabel, outcomes=outcomes)
        ws.load_page(ws.page.page if ws.page else 1)
        counts = self.project_counts(ws)
        kind = "error" if state.failed or state.queued else "ok"
        return (
            self.task_list(ws)
            | counts
            | {self.message: notice(state.summary(), kind), self.model_status: self.hub.status_markdown()}
        )

    @guarded()
    def on_quality(self, ws: Workspace | None) -> Updates:
        """The chosen project's suggestion quality (``sync.quality``): its summary as the message, its counts as
        the table."""
        if ws is None or ws.project is None:
            return self.say("Pick a project first.")
        report = quality_report(ws.client, ws.project.id)
        summary = report.summary()
        if report.pairs:
            summary += "\n" + report.suggestion_text(report.suggest_thresholds())
            summary += "\n(Apply suggested thresholds stores them in the project's labeling config.)"
        return {
            self.message: notice(summary.replace("\n", " · "), "ok" if report.pairs else "info"),
            self.quality_table: gr.Dataframe(report.rows(), visible=bool(report.pairs)),
        }

    @guarded()
    def on_apply_thresholds(self, ws: Workspace | None) -> Updates:
        """Calibrate per-label box thresholds from the project's quality history (best F1) and store them in its
        labeling config, where the ML backend and pre-annotation read them; the field shows them from then on."""
        if ws is None or ws.project is None:
            return self.say("Pick a project first.")
        report = quality_report(ws.client, ws.project.id)
        suggestions = report.suggest_thresholds()
        if not suggestions:
            return self.say(report.suggestion_text(suggestions))
        apply_thresholds(ws.client, ws.project.id, suggestions)
        config = ws.choose_project(ws.project.id, ws.unlabeled_only)
        text = report.suggestion_text(suggestions) + "\nStored in the project's labeling config."
        return self.task_list(ws) | {
            self.workspace: ws,
            self.label_thresholds: thresholds_text(config.label_thresholds),
            self.message: notice(text.replace("\n", " · "), "ok"),
        }

    @guarded()
    def on_cancel_prelabel(self, ws: Workspace | None) -> Updates:
        if ws is None:
            return self.say("Nothing to cancel.")
        ws.stop_prelabel.set()
        return self.say("Stopping the pre-annotation after the current task; what is done stays written.")


def thresholds_text(thresholds: dict[str, float]) -> str:
    """Per-label thresholds as the field shows them: "cat=0.4, dog=0.5"."""
    return ", ".join(f"{label}={threshold:g}" for label, threshold in sorted(thresholds.items()))


def project_choices(projects: list[Project]) -> list[tuple[str, int]]:
    """The project dropdown's entries: title, id and how many tasks are labeled."""
    return [(f"{p.title} (#{p.id}) · {p.labeled_count}/{p.task_count} labeled", p.id) for p in projects]


def layout(hub: ModelHub, model_status: gr.Markdown, settings: BackendSettings) -> LabelStudioTab:
    """The tab's components, in three columns: connection and tasks, the open task, review and push."""
    c: dict[str, Any] = {
        "workspace": gr.State(None, delete_callback=lambda ws: ws and ws.close()),
        "review": gr.State(None),
    }
    with gr.Row(equal_height=True, elem_classes="gl-prompt-row"):
        c["url"] = gr.Textbox(
            settings.label_studio_url or "",
            label="Label Studio URL",
            placeholder="http://localhost:8080",
            scale=3,
            elem_id="ls-url",
        )
        hint = (
            "set in the environment: leave empty to use it"
            if settings.label_studio_token
            else "Label Studio → Account & Settings → Access Token"
        )
        c["token"] = gr.Textbox(label="Access token", type="password", scale=3, elem_id="ls-token", placeholder=hint)
        c["connect"] = gr.Button("Connect", variant="primary", scale=1, min_width=110, elem_id="ls-connect")
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=280):
            task_column(c)
        with gr.Column(scale=6, min_width=420):
            open_task_column(c, hub.default_segmenter, hub.lazy.settings.detector)
        with gr.Column(scale=5, min_width=340):
            c["kind"] = gr.Radio(["annotation", "prediction"], value="annotation", label="Push as", elem_id="ls-kind")
            c["replace"] = gr.Checkbox(
                False,
                label="Replace our earlier predictions",
                elem_id="ls-replace",
                info="Predictions pushed or pre-annotated replace groundlabel's earlier ones "
                "on the task (other models' stay)",
            )
            with gr.Row(equal_height=True, elem_classes="gl-push-row"):
                c["push"] = gr.Button("Push & next task", variant="primary", scale=3, elem_id="ls-push")
                c["skip"] = gr.Button("Skip", scale=1, min_width=70, elem_id="ls-skip")
            c["message"] = gr.HTML(elem_id="ls-message")
            c["kept_info"] = gr.HTML(elem_id="ls-kept")
            with gr.Row(equal_height=True):
                c["keep_label"] = gr.Dropdown([], label="Keep all of", scale=3, min_width=120, elem_id="ls-keep-label")
                c["keep_above"] = gr.Number(
                    0.5,
                    label="scored above",
                    minimum=0,
                    maximum=1,
                    step=0.05,
                    scale=2,
                    min_width=90,
                    elem_id="ls-keep-above",
                )
                c["keep_go"] = gr.Button("Keep", size="sm", scale=1, min_width=70, elem_id="ls-keep-go")
            with gr.Column(elem_id="ls-review"):
                review_rows(c["review"], c["workspace"], c["repair_target"], c["preview"], c["kept_info"], c["editor"])
    return LabelStudioTab(hub=hub, settings=settings, model_status=model_status, **c)


def task_column(c: dict[str, Any]) -> None:
    """Connection state, project, label chips and the paginated task list."""
    c["connection"] = gr.HTML(
        "<div class='gl-notice gl-info'>Not connected.</div>", padding=False, elem_id="ls-connection"
    )
    c["project"] = gr.Dropdown([], value=None, label="Project", elem_id="ls-project")
    c["chips"] = gr.CheckboxGroup([], label="Labels (the ticked ones form the prompt)", elem_id="ls-labels")
    with gr.Row():
        c["unlabeled"] = gr.Checkbox(True, label="Only tasks not yet labeled", elem_id="ls-unlabeled")
        c["by_score"] = gr.Checkbox(False, label="Lowest prediction score first", elem_id="ls-by-score")
    c["tasks"] = gr.Dataframe(
        headers=TASK_HEADERS,
        interactive=False,
        max_height=300,
        elem_id="ls-tasks",
        column_widths=["18%", "50%", "16%", "16%"],
    )
    with gr.Row(equal_height=True, elem_classes="gl-pager-row"):
        c["previous_page"] = gr.Button("◀", size="sm", min_width=50, scale=0, elem_id="ls-prev-page")
        c["pager"] = gr.HTML("<div class='gl-pager'>Connect, then pick a project.</div>", elem_id="ls-pager")
        c["next_page"] = gr.Button("▶", size="sm", min_width=50, scale=0, elem_id="ls-next-page")
    with gr.Row():
        c["retry"] = gr.Button("Retry outbox", size="sm", elem_id="ls-retry")
        c["prelabel_all"] = gr.Button("Pre-annotate project", size="sm", elem_id="ls-prelabel")
        c["cancel_prelabel"] = gr.Button("Cancel", size="sm", min_width=70, scale=0, elem_id="ls-prelabel-cancel")
    with gr.Row():
        c["quality"] = gr.Button("Suggestion quality", size="sm", elem_id="ls-quality")
        c["apply_thresholds"] = gr.Button("Apply suggested thresholds", size="sm", elem_id="ls-apply-thresholds")
    c["quality_table"] = gr.Dataframe(
        headers=ROW_HEADERS, interactive=False, visible=False, max_height=300, elem_id="ls-quality-table"
    )


def open_task_column(c: dict[str, Any], default_segmenter: str, app_detector: str) -> None:
    """The open task: its header, the prompt, the preview of what will be pushed, output and thresholds."""
    c["header"] = gr.HTML(NO_TASK, elem_id="ls-task")
    with gr.Row(equal_height=True, elem_classes="gl-prompt-row"):
        c["prompt"] = gr.Textbox(label="Prompt", max_lines=2, scale=4, elem_id="ls-prompt")
        c["detect"] = gr.Button("Detect", scale=1, min_width=90, elem_id="ls-detect")
    with gr.Tabs():
        with gr.Tab("What will be pushed") as c["preview_tab"]:
            # no label over the image: it would hide the tags of boxes at its top edge (the tab names it)
            c["preview"] = gr.Image(
                label="What will be pushed",
                show_label=False,
                type="pil",
                format="jpeg",
                interactive=False,
                height=360,
                buttons=["fullscreen"],
                elem_id="ls-preview",
            )
            with gr.Row(equal_height=True):
                c["repair_target"] = gr.Dropdown(
                    [NEW_OBJECT],
                    value=NEW_OBJECT,
                    label="A click repairs",
                    scale=2,
                    min_width=140,
                    elem_id="ls-repair-target",
                )
                c["click_kind"] = gr.Radio(
                    [SELECTS, ADDS, REMOVES],
                    value=ADDS,
                    label="A click",
                    scale=4,
                    min_width=260,
                    elem_id="ls-click-kind",
                )
                with gr.Column(scale=1, min_width=100):
                    c["undo_click"] = gr.Button("Undo click", size="sm", elem_id="ls-undo-click")
                    c["show_masks"] = gr.Checkbox(True, label="Show masks", container=False, elem_id="ls-show-masks")
            gr.HTML(KEYS_HELP, elem_id="ls-keys-help")
            # the page's key listener (KEYS_JS) writes each shortcut here and presses the button; hidden by CSS, not
            # by Gradio, so that both exist on the page
            c["key"] = gr.Textbox(elem_id="ls-key", elem_classes="gl-hidden", show_label=False, container=False)
            # "negative" while a shift-click or right click on the preview is handled (theme.CANVAS_JS sets it)
            c["click_negative"] = gr.Textbox(
                elem_id="ls-click-negative", elem_classes="gl-hidden", show_label=False, container=False
            )
            c["key_go"] = gr.Button("key", elem_id="ls-key-go", elem_classes="gl-hidden")
        with gr.Tab("Edit boxes", elem_id="ls-edit-tab") as c["edit_tab"]:
            c["editor"] = image_annotator(
                None,
                label="Drag or resize a box (D), draw one (C), remove the selected one",
                sources=None,
                show_clear_button=False,
                show_remove_button=True,
                show_download_button=False,
                use_default_label=True,
                height=360,
                elem_id="ls-editor",
            )
            c["apply_edits"] = gr.Button("Apply box edits", size="sm", elem_id="ls-apply-edits")
    c["result_info"] = gr.HTML(elem_id="ls-summary")
    with gr.Accordion("Output and thresholds", open=False):
        c["mode"], c["segmenter"] = output_controls("ls", default_segmenter)
        c["box"], c["text"], c["nms"] = threshold_sliders("ls", reads_text_threshold(app_detector))
        c["label_thresholds"] = label_thresholds_field("ls")
        c["detector"] = detector_dropdown("ls", app_detector)
        show_text_threshold(c["text"], c["detector"], app_detector)


def review_rows(
    review: gr.State,
    workspace: gr.State,
    target: gr.Dropdown,
    preview_image: gr.Image,
    kept_info: gr.HTML,
    editor: image_annotator,
) -> None:
    """One row per detection, re-rendered when a new review starts: keep it or not, and its label (the preview and
    the box editor follow); the chosen detection's row marked."""

    @gr.render(inputs=[review, workspace, target], triggers=[review.change])
    def rows(current: Review | None, ws: Workspace | None, chosen: str | None) -> None:
        if current is None or ws is None or ws.config is None:
            return
        if len(current.result) == 0:
            gr.HTML(notice("Nothing found: lower the box threshold or change the prompt.", "info"))
            return
        for i, (phrase, score) in enumerate(zip(current.result.phrases, current.result.scores)):
            marked = ["gl-review-row", *(["gl-selected"] * (chosen == str(i)))]
            with gr.Row(equal_height=True, elem_classes=marked):
                # the labels are what screen readers announce: "Keep #2", "Label of #2" (not "on", "Dropdown")
                keep = gr.Checkbox(
                    current.keep[i],
                    label=f"Keep #{i + 1}",
                    interactive=True,
                    container=False,
                    scale=0,
                    min_width=90,
                    elem_id=f"ls-keep-{i}",
                )
                label = gr.Dropdown(
                    ws.config.labels,
                    value=current.labels[i],
                    label=f"Label of #{i + 1}",
                    interactive=True,
                    show_label=False,
                    container=False,
                    scale=3,
                    min_width=110,
                    elem_id=f"ls-label-{i}",
                )
                gr.HTML(
                    f"<span class='gl-phrase'>{score:.2f} “{html.escape(phrase)}”</span>",
                    scale=2,
                    min_width=80,
                    padding=False,
                )
            keep.input(decide(i, "keep"), [review, keep, workspace, target], [preview_image, kept_info, editor])
            label.input(decide(i, "labels"), [review, label, workspace, target], [preview_image, kept_info, editor])


def decide(index: int, choice: str) -> Callable:
    """A review row's handler: record the keep/label choice and redraw what will be pushed."""

    def handler(current: Review, value: bool | str, ws: Workspace, target: str | None) -> tuple:
        getattr(current, choice)[index] = value
        return preview(ws, current, target), kept_text(current), box_editor(ws, current) if ws.editing else gr.skip()

    return handler


def preview(ws: Workspace, current: Review, target: str | None) -> Any:
    """What will be pushed, drawn in the project's colours, the chosen detection (``target``) highlighted, masks
    shown or not as the reviewer chose."""
    selected = None if target in (None, NEW_OBJECT) else int(target)
    return current.preview(ws.config.label_colors(), selected=selected, show_masks=ws.show_masks)


def box_editor(ws: Workspace, current: Review) -> image_annotator:
    """The box editor showing ``current``'s kept boxes, with the project's labels in Label Studio's colours."""
    labels, colors = ws.config.labels, ws.config.label_colors()
    return image_annotator(
        current.editor_value(colors), label_list=labels, label_colors=[colors.get(label, _FALLBACK) for label in labels]
    )


def kept_text(current: Review) -> str:
    kept = current.kept()
    labels = ", ".join(f"{label} ×{n}" for label, n in Counter(kept.display_labels()).items())
    return (
        f"<strong>{len(kept)} of {len(current.result)} kept</strong>{f' ({labels})' if labels else ''}: "
        "untick to drop, pick another label from a row's menu, then push." + boxes_data(current.result)
    )


def task_link(ws: Workspace, task_id: int, text: str) -> str:
    """A link that opens the task in Label Studio, in a new browser tab."""
    return f"<a href='{html.escape(ws.task_url(task_id))}' target='_blank' rel='noopener'>{html.escape(text)} ↗</a>"


def env_token_for(url: str, env: BackendSettings) -> str:
    """The environment's token, but only for the environment's Label Studio URL: never sent to a URL typed here."""
    same = bool(env.label_studio_url) and url.strip().rstrip("/") == env.label_studio_url.strip().rstrip("/")
    return (env.label_studio_token or "") if same else ""
