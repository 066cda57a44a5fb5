"""Label Studio tab: connect, pick a project and a task, prompt, review each detection, push, next task.

The token stays on the server: the browser never receives the one from the environment (the field only says it
is set), and that one is sent only to the Label Studio URL it was configured for. A push Label Studio cannot take
(down, 401) waits in the on-disk outbox; "Retry outbox" or the next successful push delivers it.
"""

from __future__ import annotations

import functools
import html
from collections import Counter
from dataclasses import replace

import gradio as gr

from sync import BackendSettings, LabelStudioClient, Pusher, SyncError
from sync.prelabel import PrelabelJob, PrelabelProgress, prelabel

from .controls import BOXES, MASKS, chosen_segmenter, output_controls, threshold_sliders
from .detections import failure, notice, run_query, summary
from .models import ModelHub, ProgressFn
from .review import Review, Workspace, describe_regions

TASK_HEADERS = ["task", "image", "ann.", "pred."]
NO_TASK = "<div class='gl-task'>Click a task in the list to open it.</div>"


def labelstudio_tab(hub: ModelHub, model_status: gr.Markdown) -> None:
    """Lay out the Label Studio tab and wire its events; ``model_status`` is refreshed after model runs."""
    env = BackendSettings.from_env()
    workspace = gr.State(None, delete_callback=lambda ws: ws and ws.close())
    review = gr.State(None)

    with gr.Row(equal_height=True, elem_classes="gl-prompt-row"):
        url = gr.Textbox(env.label_studio_url or "", label="Label Studio URL", placeholder="http://localhost:8080",
                         scale=3, elem_id="ls-url")
        token = gr.Textbox(label="Access token", type="password", scale=3, elem_id="ls-token",
                           placeholder="set in the environment: leave empty to use it" if env.label_studio_token
                           else "Label Studio → Account & Settings → Access Token")
        connect = gr.Button("Connect", variant="primary", scale=1, min_width=110, elem_id="ls-connect")
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=280):  # connection, project and task list
            connection = gr.HTML("<div class='gl-notice gl-info'>Not connected.</div>", padding=False,
                                 elem_id="ls-connection")
            project = gr.Dropdown([], value=None, label="Project", elem_id="ls-project")
            chips = gr.CheckboxGroup([], label="Labels (the ticked ones form the prompt)", elem_id="ls-labels")
            unlabeled = gr.Checkbox(True, label="Only tasks not yet labeled", elem_id="ls-unlabeled")
            tasks = gr.Dataframe(headers=TASK_HEADERS, interactive=False, max_height=300, elem_id="ls-tasks",
                                 column_widths=["18%", "50%", "16%", "16%"])
            with gr.Row(equal_height=True, elem_classes="gl-pager-row"):
                previous_page = gr.Button("◀", size="sm", min_width=50, scale=0, elem_id="ls-prev-page")
                pager = gr.HTML("<div class='gl-pager'>Connect, then pick a project.</div>", elem_id="ls-pager")
                next_page = gr.Button("▶", size="sm", min_width=50, scale=0, elem_id="ls-next-page")
            with gr.Row():
                retry = gr.Button("Retry outbox", size="sm", elem_id="ls-retry")
                prelabel_all = gr.Button("Pre-annotate project", size="sm", elem_id="ls-prelabel")
        with gr.Column(scale=6, min_width=420):  # the open task
            header = gr.HTML(NO_TASK, elem_id="ls-task")
            with gr.Row(equal_height=True, elem_classes="gl-prompt-row"):
                prompt = gr.Textbox(label="Prompt", max_lines=2, scale=4, elem_id="ls-prompt")
                detect = gr.Button("Detect", scale=1, min_width=90, elem_id="ls-detect")
            preview = gr.Image(label="What will be pushed", type="pil", format="jpeg", interactive=False, height=360,
                               buttons=["fullscreen"], elem_id="ls-preview")
            result_info = gr.HTML(elem_id="ls-summary")
            with gr.Accordion("Output and thresholds", open=False):
                mode, segmenter = output_controls("ls")
                box, text = threshold_sliders("ls")
        with gr.Column(scale=5, min_width=340):  # review and push
            kind = gr.Radio(["annotation", "prediction"], value="annotation", label="Push as", elem_id="ls-kind")
            with gr.Row(equal_height=True, elem_classes="gl-push-row"):
                push = gr.Button("Push & next task", variant="primary", scale=3, elem_id="ls-push")
                skip = gr.Button("Skip", scale=1, min_width=70, elem_id="ls-skip")
            message = gr.HTML(elem_id="ls-message")
            kept_info = gr.HTML(elem_id="ls-kept")
            with gr.Column(elem_id="ls-review"):
                @gr.render(inputs=[review, workspace], triggers=[review.change])
                def review_rows(current: Review | None, ws: Workspace | None):
                    """One row per detection: keep it or not, and its label (any label of the project)."""
                    if current is None or ws is None or ws.config is None:
                        return
                    if len(current.result) == 0:
                        gr.HTML(notice("Nothing found: lower the box threshold or change the prompt.", "info"))
                        return
                    for i, (phrase, score) in enumerate(zip(current.result.phrases, current.result.scores)):
                        with gr.Row(equal_height=True, elem_classes="gl-review-row"):
                            keep = gr.Checkbox(current.keep[i], label=f"#{i + 1}", interactive=True, container=False,
                                               scale=0, min_width=64, elem_id=f"ls-keep-{i}")
                            label = gr.Dropdown(ws.config.labels, value=current.labels[i], interactive=True,
                                                show_label=False, container=False, scale=3, min_width=110,
                                                elem_id=f"ls-label-{i}")
                            gr.HTML(f"<span class='gl-phrase'>{score:.2f} “{html.escape(phrase)}”</span>",
                                    scale=2, min_width=80, padding=False)
                        keep.input(decide(i, "keep"), [review, keep], [preview, kept_info])
                        label.input(decide(i, "labels"), [review, label], [preview, kept_info])

    # --- helpers: each returns {component: new value} ----------------------------------------------------------

    def decide(index: int, choice: str):
        """A review row's handler: record the keep/label choice and redraw what will be pushed."""
        def handler(current: Review, value):
            getattr(current, choice)[index] = value
            return current.preview(), kept_text(current)
        return handler

    def kept_text(current: Review) -> str:
        kept = current.kept()
        labels = ", ".join(f"{label} ×{n}" for label, n in Counter(kept.display_labels()).items())
        return (f"<strong>{len(kept)} of {len(current.result)} kept</strong>{f' ({labels})' if labels else ''}: "
                "untick to drop, pick another label from a row's menu, then push.")

    def task_list(ws: Workspace) -> dict:
        page = ws.page
        text = f"Page {page.page} of {page.pages} · {page.total} task{'s' * (page.total != 1)}"
        return {tasks: ws.task_rows(), pager: f"<div class='gl-pager'>{text}</div>"}

    def run(ws: Workspace, box_value: float, text_value: float, progress: ProgressFn) -> dict:
        result, seconds = run_query(hub, ws.query, box_value, text_value, progress)
        current = Review.of(ws.query.image, result)
        return {workspace: ws, review: current, preview: current.preview(), kept_info: kept_text(current),
                result_info: summary(result, ws.query, seconds, box_value, text_value),
                model_status: hub.status_markdown()}

    def open_task(ws: Workspace, task_id: int, prompt_text: str, mode_value: str, segmenter_value: str,
                  box_value: float, text_value: float, progress: ProgressFn) -> dict:
        progress(0.02, desc=f"Fetching task {task_id}")
        query = ws.open(task_id, prompt_text, chosen_segmenter(mode_value, segmenter_value))
        ids = ws.task_ids()
        where = f" · {ids.index(task_id) + 1} of {len(ids)} on this page" if task_id in ids else ""
        updates = {header: f"<div class='gl-task'><strong>Task #{task_id}</strong> · {html.escape(ws.task_name())} · "
                           f"{task_link(ws, task_id, 'open in Label Studio')}{where}</div>"}
        if query.prompt.strip():
            return updates | run(ws, box_value, text_value, progress)
        return updates | {workspace: ws, review: None, preview: query.image.pil, kept_info: "",
                          result_info: notice("Type what to look for, then press Enter.", "info")}

    def advance(ws: Workspace, done: str, prompt_text, mode_value, segmenter_value, box_value, text_value,
                progress: ProgressFn) -> dict:
        """Open the task after the current one; ``done`` (what just happened) stays in the message box."""
        try:
            next_id = ws.next_task_id()
            ws.load_page(ws.page.page)
        except SyncError as error:
            return {workspace: ws, message: done + failure(error)}
        if next_id is None:
            return task_list(ws) | {workspace: ws, review: None, preview: None, header: NO_TASK, kept_info: "",
                                    result_info: "", message: done + notice("No more tasks in this list.", "info")}
        try:
            opened = open_task(ws, next_id, prompt_text, mode_value, segmenter_value, box_value, text_value, progress)
        except Exception as error:  # noqa: BLE001 - keep the report of the push, add why the next task did not open
            return task_list(ws) | {workspace: ws, message: done + failure(error)}
        return task_list(ws) | opened | {message: done}

    def guarded(handler=None, *, report_to: gr.HTML | None = None):
        """Any failure becomes a readable message (in ``report_to``, else the message box under the push
        button); the rest of the tab stays as it was."""
        if handler is None:
            return functools.partial(guarded, report_to=report_to)

        @functools.wraps(handler)
        def wrapped(*args, **kwargs):
            try:
                return handler(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - the UI boundary
                return {report_to or message: failure(error), model_status: hub.status_markdown()}
        return wrapped

    # --- handlers -----------------------------------------------------------------------------------------------

    @guarded(report_to=connection)
    def on_connect(url_text: str, token_text: str, old: Workspace | None):
        client = LabelStudioClient(url_text, token_text or env_token_for(url_text, env))
        try:
            user = client.whoami()
            projects = client.projects()
        except SyncError:
            client.close()
            raise  # the previous connection, if any, stays usable
        if old is not None:
            old.close()
        ws = Workspace(client, Pusher(client), user=user.get("email") or user.get("username") or "")
        waiting = ws.pusher.pending
        text = (f"Connected as {ws.user} · {len(projects)} project{'s' * (len(projects) != 1)}"
                + (f" · {waiting} push(es) wait in the outbox: Retry outbox sends them." if waiting else ""))
        choices = [(f"{p.title} (#{p.id}) · {p.labeled_count}/{p.task_count} labeled", p.id) for p in projects]
        return {workspace: ws, connection: notice(text, "ok"), message: "",
                project: gr.Dropdown(choices=choices, value=None)}

    @guarded
    def on_project(ws: Workspace | None, project_id, unlabeled_only: bool):
        if ws is None or project_id is None:
            return {message: notice("Connect to Label Studio first.", "info")}
        config = ws.choose_project(int(project_id), unlabeled_only)
        return task_list(ws) | {
            workspace: ws, chips: gr.CheckboxGroup(choices=config.labels, value=config.labels),
            prompt: config.default_prompt, mode: MASKS if config.wants_masks else BOXES, review: None, preview: None,
            header: NO_TASK, kept_info: "", result_info: "", message: "",
        }

    @guarded
    def on_filter(ws: Workspace | None, unlabeled_only: bool):
        if ws is None or ws.project is None:
            return {}
        ws.unlabeled_only = unlabeled_only
        ws.load_page(1)
        return task_list(ws)

    def turn_page(step: int):
        @guarded
        def handler(ws: Workspace | None):
            if ws is None or ws.page is None:
                return {}
            ws.load_page(min(max(1, ws.page.page + step), ws.page.pages))
            return task_list(ws)
        return handler

    @guarded
    def on_task_click(ws: Workspace | None, prompt_text, mode_value, segmenter_value, box_value, text_value,
                      evt: gr.SelectData, progress=gr.Progress(track_tqdm=True)):
        if ws is None or ws.page is None:
            return {}
        return open_task(ws, int(evt.row_value[0]), prompt_text, mode_value, segmenter_value, box_value,
                         text_value, progress) | {message: ""}

    @guarded
    def on_detect(ws: Workspace | None, prompt_text, mode_value, segmenter_value, box_value, text_value,
                  progress=gr.Progress(track_tqdm=True)):
        if ws is None or ws.query is None:
            return {message: notice("Open a task first (click it in the list).", "info")}
        ws.query = replace(ws.query, prompt=prompt_text, segmenter=chosen_segmenter(mode_value, segmenter_value))
        return run(ws, box_value, text_value, progress) | {message: ""}

    @guarded
    def on_refilter(ws: Workspace | None, mode_value, segmenter_value, box_value, text_value,
                    progress=gr.Progress(track_tqdm=True)):
        if ws is None or ws.query is None or not ws.query.prompt.strip():
            return {}
        ws.query = replace(ws.query, segmenter=chosen_segmenter(mode_value, segmenter_value))
        return run(ws, box_value, text_value, progress)

    @guarded
    def on_push(ws: Workspace | None, current: Review | None, kind_value: str, prompt_text, mode_value,
                segmenter_value, box_value, text_value, progress=gr.Progress(track_tqdm=True)):
        if ws is None or ws.task is None or current is None:
            return {message: notice("Open a task and detect first.", "info")}
        task_id = ws.task.id
        outcome, sent = ws.push(current, kind_value)
        link = task_link(ws, task_id, f"task #{task_id}")
        if outcome.status == "queued":
            done = (f"<div class='gl-notice gl-error'>Label Studio did not take the {kind_value} for {link}: "
                    f"{html.escape(outcome.error or '')} It is kept in the outbox ({ws.pusher.pending} waiting); "
                    "Retry outbox sends it.</div>")
        else:
            delivered = sum(item.status != "queued" for item in ws.pusher.flush())
            verb = "Pushed" if outcome.status == "created" else "Already in Label Studio:"
            done = (f"<div class='gl-notice gl-ok'>{verb} {kind_value} #{outcome.id} to {link}: "
                    f"{html.escape(describe_regions(sent))}."
                    + (f" Also delivered {delivered} from the outbox." if delivered else "") + "</div>")
        return advance(ws, done, prompt_text, mode_value, segmenter_value, box_value, text_value, progress)

    @guarded
    def on_skip(ws: Workspace | None, prompt_text, mode_value, segmenter_value, box_value, text_value,
                progress=gr.Progress(track_tqdm=True)):
        if ws is None or ws.page is None:
            return {message: notice("Pick a project first.", "info")}
        return advance(ws, "", prompt_text, mode_value, segmenter_value, box_value, text_value, progress)

    @guarded
    def on_retry(ws: Workspace | None, progress=gr.Progress()):
        if ws is None:
            return {message: notice("Connect first: the outbox is kept per Label Studio URL.", "info")}
        progress(0.1, desc=f"Sending {ws.pusher.pending} waiting push(es)")
        sent = sum(item.status != "queued" for item in ws.pusher.flush())
        left = ws.pusher.pending
        return {message: notice(f"Outbox: {sent} delivered, {left} still waiting.", "error" if left else "ok")}

    @guarded
    def on_prelabel(ws: Workspace | None, prompt_text, mode_value, segmenter_value, box_value, text_value,
                    progress=gr.Progress()):
        """Predictions for every task of the project (only unlabeled ones when so filtered), as sync.prelabel
        makes them: prefetched images, batched writes, tasks already predicted by this setup skipped."""
        if ws is None or ws.project is None:
            return {message: notice("Pick a project first.", "info")}
        segmenter_name = chosen_segmenter(mode_value, segmenter_value)
        pipeline = hub.load(segmenter_name, progress)
        job = PrelabelJob(ws.project.id, prompt_text or None, segmenter_name, box_value, text_value,
                          only_unlabeled=ws.unlabeled_only)

        def show(state: PrelabelProgress) -> None:
            if state.total:
                progress((state.finished, state.total), unit="tasks",
                         desc=f"Pre-annotating: {state.done} done, {state.skipped} skipped, {len(state.failed)} failed")

        state = prelabel(ws.client, pipeline, job, show, outbox=ws.pusher.outbox)
        ws.load_page(ws.page.page if ws.page else 1)
        return task_list(ws) | {message: notice(state.summary(), "error" if state.failed or state.queued else "ok"),
                                model_status: hub.status_markdown()}

    # --- wiring -------------------------------------------------------------------------------------------------

    everything = [workspace, review, connection, project, chips, tasks, pager, header, preview, prompt, mode,
                  result_info, kept_info, message, model_status]
    settings = [prompt, mode, segmenter, box, text]
    connect.click(on_connect, [url, token, workspace], everything)
    token.submit(on_connect, [url, token, workspace], everything)
    project.input(on_project, [workspace, project, unlabeled], everything)
    unlabeled.input(on_filter, [workspace, unlabeled], everything)
    previous_page.click(turn_page(-1), [workspace], everything)
    next_page.click(turn_page(+1), [workspace], everything)
    chips.input(lambda ticked: ". ".join(ticked), chips, prompt)
    tasks.select(on_task_click, [workspace, *settings], everything, concurrency_id="model")
    detect.click(on_detect, [workspace, *settings], everything, concurrency_id="model")
    prompt.submit(on_detect, [workspace, *settings], everything, concurrency_id="model")
    for control in (box, text):
        control.change(on_refilter, [workspace, mode, segmenter, box, text], everything, show_progress="minimal",
                       trigger_mode="always_last", concurrency_limit=4)
    for control in (mode, segmenter):
        control.input(on_refilter, [workspace, mode, segmenter, box, text], everything, concurrency_id="model")
    push.click(on_push, [workspace, review, kind, *settings], everything, concurrency_id="model")
    skip.click(on_skip, [workspace, *settings], everything, concurrency_id="model")
    retry.click(on_retry, [workspace], everything)
    prelabel_all.click(on_prelabel, [workspace, *settings], everything, concurrency_id="model")


def task_link(ws: Workspace, task_id: int, text: str) -> str:
    """A link that opens the task in Label Studio, in a new browser tab."""
    return f"<a href='{html.escape(ws.task_url(task_id))}' target='_blank' rel='noopener'>{html.escape(text)} ↗</a>"


def env_token_for(url: str, env: BackendSettings) -> str:
    """The environment's token, but only for the environment's Label Studio URL: never sent to a URL typed here."""
    same = bool(env.label_studio_url) and url.strip().rstrip("/") == env.label_studio_url.strip().rstrip("/")
    return (env.label_studio_token or "") if same else ""
