"""What a project's predictions hold, through a real Label Studio: a config change makes Label Studio predict
again (the config is part of the model version), and the output (boxes, masks or both) each project chooses."""

from __future__ import annotations

import pytest

from pipeline import LazyPipeline, SettingsError
from sync import BackendSettings, ProjectConfig
from sync.backend import options_for
from tests.labelstudio import BOX, GROUNDING_DINO_CONFIG, SEGMENTER, TEXT, backend_app, png, serve
from tests.test_sync_backend import retrieve_predictions

RENAMED = GROUNDING_DINO_CONFIG.replace('name="label2"', 'name="mask"')


@pytest.fixture(scope="module")
def auto_backend(pipeline, tmp_path_factory):
    """The backend as the environment configures it by default (GROUNDLABEL_OUTPUT unset: auto), with masks."""
    settings = BackendSettings(
        box_threshold=BOX,
        text_threshold=TEXT,
        segmenter=SEGMENTER,
        output="auto",
        state_dir=tmp_path_factory.mktemp("output-state"),
    )
    with serve(backend_app(LazyPipeline(pipeline=pipeline), settings)) as url:
        yield url


def _types(prediction: dict) -> set[str]:
    return {region["type"] for region in prediction["result"]}


def test_a_renamed_brush_tag_makes_label_studio_predict_again_and_no_stored_region_lacks_its_label(
    label_studio, auto_backend
):
    assert RENAMED != GROUNDING_DINO_CONFIG
    project = label_studio.create_project()
    tasks = label_studio.upload_images(project, {f"t{i}.png": png(64, 48, seed=40 + i) for i in range(2)})
    label_studio.register_ml_backend(project, auto_backend)
    before = retrieve_predictions(label_studio, project, tasks)
    assert all(len(stored) == 1 and _types(stored[0]) == {"brushlabels"} for stored in before.values())
    old_version = before[tasks[0]][0]["model_version"]

    label_studio.api("PATCH", f"/api/projects/{project}", json={"label_config": RENAMED})
    after = retrieve_predictions(label_studio, project, tasks)
    again = retrieve_predictions(label_studio, project, tasks)  # /setup announced the version predictions carry

    config = ProjectConfig.parse(RENAMED)
    tags = {control.name: control for control in config.controls}
    for task in tasks:
        assert len(after[task]) == 2 and len(again[task]) == 2
        (new,) = [p for p in after[task] if p["model_version"] != old_version]
        assert new["model_version"] == config.with_output("auto", SEGMENTER).version(new["model_version"])
        assert new["result"], "the tiny models find something on every test image"
        for region in new["result"]:
            assert region["from_name"] == "mask" and region["from_name"] in tags
            labels = region["value"].get(region["type"])
            assert labels and set(labels) <= set(tags[region["from_name"]].labels)


@pytest.mark.parametrize(
    ("extra_params", "types"),
    [
        (None, {"brushlabels"}),  # auto: a brush tag and a segmenter -> masks only, one accept control per shape
        ({"output": "both"}, {"brushlabels", "rectanglelabels"}),
        ({"output": "boxes"}, {"rectanglelabels"}),
    ],
    ids=["auto", "both", "boxes"],
)
def test_each_project_gets_the_output_its_connection_chooses(label_studio, auto_backend, extra_params, types):
    project = label_studio.create_project()
    tasks = label_studio.upload_images(project, {"one.png": png(64, 48, seed=41)})
    ml_id = label_studio.register_ml_backend(project, auto_backend)
    if extra_params is not None:
        # Label Studio 1.23 answers 500 to a PATCH without url and project (its checks need them)
        label_studio.api(
            "PATCH", f"/api/ml/{ml_id}", json={"url": auto_backend, "project": project, "extra_params": extra_params}
        )

    (prediction,) = retrieve_predictions(label_studio, project, tasks)[tasks[0]]

    assert _types(prediction) == types
    if types == {"brushlabels", "rectanglelabels"}:
        boxes = [r for r in prediction["result"] if r["type"] == "rectanglelabels"]
        assert len(boxes) == len(prediction["result"]) - len(boxes)  # a box and a mask per detection


NMS_CONFIG = """<View><Image name="image" value="$image"/>
  <Number name="nms_threshold" toName="image" defaultValue="0.7"/>
  <RectangleLabels name="label" toName="image"><Label value="cats"/></RectangleLabels></View>"""


def test_the_nms_threshold_comes_from_the_environment_the_number_tag_and_the_labeling_screen():
    settings = BackendSettings.from_env({"NMS_THRESHOLD": "0.6", "GROUNDLABEL_OUTPUT": "Boxes"})
    assert settings.nms_threshold == 0.6 and settings.output == "boxes"
    plain = ProjectConfig.parse(NMS_CONFIG.replace('defaultValue="0.7"', ""))
    assert options_for(plain, None, settings).nms_threshold == 0.6
    config = ProjectConfig.parse(NMS_CONFIG)
    assert options_for(config, None, settings).nms_threshold == 0.7
    typed = [{"from_name": "nms_threshold", "type": "number", "value": {"number": 0.3}}]
    assert options_for(config, typed, settings).nms_threshold == 0.3
    with pytest.raises(SettingsError, match="GROUNDLABEL_OUTPUT"):
        BackendSettings.from_env({"GROUNDLABEL_OUTPUT": "polygons"})
