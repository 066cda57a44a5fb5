"""Per-label box thresholds in both UI tabs, driven in chromium: the field re-filters cached detector output, the
Label Studio tab shows the project's own thresholds and stores calibrated ones only when its button is clicked."""

from __future__ import annotations

import re

import numpy as np
from playwright.sync_api import expect

from pipeline import DEFAULT_BOX_THRESHOLD, Options, load_image
from sync import LabelStudioClient, ProjectConfig, to_label_studio
from tests.browser import grid_rows, smooth_png
from tests.counting import count_calls
from tests.labelstudio import GROUNDING_DINO_CONFIG, detections
from tests.test_sync_label_thresholds import HISTORY, VERSION, A, B, C
from ui import testing as ui_testing

pytest_plugins = ["tests.browser"]


def test_the_playgrounds_per_label_field_refilters_without_a_model_run(page, pipeline, tmp_path):
    path = tmp_path / "photo-27.png"
    path.write_bytes(smooth_png(27))
    scores = pipeline(load_image(path), "cat", Options(DEFAULT_BOX_THRESHOLD)).scores
    assert len(scores) >= 2, "the tiny model finds too little on this image: pick another seed"
    threshold = float(sorted(scores)[len(scores) // 2 - 1])  # keeps the upper half
    wanted = int((scores > threshold).sum())
    with count_calls(pipeline.detector.model) as forwards:
        page.locator("#pg-prompt textarea").fill("cat")
        page.locator("#pg-image input[type=file]").set_input_files(str(path))
        expect(page.locator("#pg-message")).to_contain_text("for “cat”")
        ran = forwards.count
        field = page.locator("#pg-label-thresholds input, #pg-label-thresholds textarea")
        field.fill(f"cat={threshold:.7f}")
        field.press("Enter")
        expect(page.locator("#pg-table [role=grid]")).to_have_attribute("aria-rowcount", str(wanted + 1))
        assert grid_rows(page, "#pg-table") == wanted and forwards.count == ran
        field.fill("cat=lots")
        field.press("Enter")
        expect(page.locator("#pg-message")).to_contain_text("The box threshold of label 'cat' must be a number")


def test_the_label_studio_tab_shows_the_projects_thresholds_and_applies_suggested_ones_on_a_click(page, label_studio):
    xml = GROUNDING_DINO_CONFIG.replace(
        '<Label value="house" background="blue"/>', '<Label value="house" background="blue" box_threshold="0.3"/>', 1
    )
    project = label_studio.create_project(xml, title="ui thresholds")
    config = ProjectConfig.parse(xml)
    tasks = label_studio.import_tasks(project, [{"image": f"/data/upload/{n}.png"} for n in range(len(HISTORY))])
    with LabelStudioClient(label_studio.url, label_studio.token) as client:
        for task, (suggested, annotated) in zip(tasks, HISTORY):
            boxes, labels, scores = zip(*suggested)
            result = to_label_studio(
                detections(100, 100, boxes, labels, scores=list(scores)), config.with_output("boxes", None)
            )
            client.create_prediction(task, result.result, model_version=VERSION)
            truth = detections(100, 100, [b for b, _ in annotated], [x for _, x in annotated])
            client.create_annotation(task, to_label_studio(truth, config.with_output("boxes", None)).result)
        ui_testing.choose_project(page, label_studio.url, label_studio.token, project)
        page.get_by_text("Output and thresholds").click()
        field = page.locator("#ls-label-thresholds input, #ls-label-thresholds textarea")
        expect(field).to_have_value("house=0.3")  # the config's own, read when the project is chosen
        page.locator("#ls-quality").click()
        expect(page.locator("#ls-message")).to_contain_text("cats: 0.3 -> 0.63")
        assert client.project(project).config().label_thresholds == {"house": 0.3}  # shown, not stored

        page.locator("#ls-apply-thresholds").click()
        expect(page.locator("#ls-message")).to_contain_text("Stored in the project's labeling config")
        expect(field).to_have_value(re.compile(r"cats=0\.63, house=0\.3"))
        assert client.project(project).config().label_thresholds == {"cats": 0.63, "house": 0.3}


def test_keep_all_above_decides_one_labels_rows_by_score_and_leaves_the_others():
    from ui.review import Review

    result = detections(100, 100, [A, B, C, A], ["cats", "cats", "house", "cats"], scores=[0.9, 0.4, 0.2, 0.6])
    review = Review.of(load_image(np.zeros((100, 100, 3), np.uint8)), result).dropped(0).relabeled(3, "house")
    changed = review.kept_above("cats", 0.5)
    assert changed.keep == [True, False, True, True] and review.keep == [False, True, True, True]  # a new review
    assert changed.kept_above("house", 0.7).keep == [True, False, False, False]


def test_the_review_list_keeps_one_labels_detections_above_a_score_and_tasks_sort_by_prediction_score(
    page, label_studio, pipeline
):
    from tests.browser import grid_row
    from tests.test_sync_label_thresholds import _config

    config = ProjectConfig.parse(_config())
    images = [smooth_png(31), smooth_png(32)]
    project = label_studio.create_project(_config(), title="ui keep above")
    first, second = label_studio.upload_images(project, {"first.png": images[0], "second.png": images[1]})
    for task, score in ((first, 0.9), (second, 0.1)):
        label_studio.api("POST", "/api/predictions", json={"task": task, "result": [], "score": score})
    shown = pipeline(load_image(images[0]), config.default_prompt, Options(DEFAULT_BOX_THRESHOLD), config.label_map())
    cats = sorted(float(s) for s, label in zip(shown.scores, shown.labels) if label == "cats")
    assert len(cats) >= 2, "the tiny model finds too few cats on this image: pick another seed"
    threshold = round((cats[0] + cats[1]) / 2, 6)
    ui_testing.choose_project(page, label_studio.url, label_studio.token, project)
    expect(page.locator("#ls-pager")).to_contain_text("2 tasks")
    assert grid_row(page, "#ls-tasks", 1)[0] == str(first)
    page.locator("#ls-by-score input").check()
    expect(page.locator("#ls-tasks [role=gridcell][data-col='0']").first).to_have_text(str(second))

    ui_testing.open_task(page, first)
    page.locator("#ls-keep-above input").fill(str(threshold))
    page.locator("#ls-keep-go").click()
    expect(page.locator("#ls-message")).to_contain_text(f"cats: {len(cats) - 1} of {len(cats)} kept (scored above")
    expect(page.locator("#ls-kept")).to_contain_text(f"{len(shown) - 1} of {len(shown)} kept")
