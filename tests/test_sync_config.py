"""Labeling configs -> what groundlabel fills: image, prompt TextArea, labels controls, aliases, thresholds."""

from __future__ import annotations

import pytest

from sync import ConfigError, ProjectConfig
from tests.labelstudio import GROUNDING_DINO_CONFIG


def test_grounding_dino_example_config_yields_image_prompt_and_both_controls():
    config = ProjectConfig.parse(GROUNDING_DINO_CONFIG)

    assert (config.image, config.image_key, config.prompt) == ("image", "image", "prompt")
    assert [(c.name, c.type, c.labels) for c in config.controls] == [
        ("label", "rectanglelabels", ("cats", "house")),
        ("label2", "brushlabels", ("cats", "house")),
    ]
    assert config.wants_boxes and config.wants_masks
    assert config.labels == ["cats", "house"]
    assert config.default_prompt == "cats. house"


def test_predicted_values_become_aliases_of_the_label_map_and_the_default_prompt():
    config = ProjectConfig.parse("""<View><Image name="img" value="$photo"/>
      <PolygonLabels name="poly" toName="img">
        <Label value="Cat" predicted_values="kitten, tabby cat"/><Label value="Dog"/>
      </PolygonLabels></View>""")

    label_map = config.label_map()
    assert [label_map.label_for(p) for p in ("kitten", "tabby cat", "dogs", "possum")] == ["Cat", "Cat", "Dog", None]
    assert config.default_prompt == "Cat. Dog. kitten. tabby cat"
    assert (config.image, config.image_key, config.prompt) == ("img", "photo", None)
    assert config.wants_masks and not config.wants_boxes


def test_number_tags_set_thresholds_and_interactive_numbers_override_them():
    config = ProjectConfig.parse("""<View><Image name="image" value="$image"/>
      <Number name="box_threshold" toName="image" defaultValue="0.42"/><Number name="TextThreshold" toName="image"/>
      <RectangleLabels name="label" toName="image"><Label value="cat"/></RectangleLabels></View>""")

    assert (config.box_threshold, config.text_threshold) == (0.42, None)
    context = [
        {"from_name": "TextThreshold", "type": "number", "value": {"number": 0.2}},
        {"from_name": "other", "type": "number", "value": {"number": 0.9}},
    ]
    assert config.thresholds_from(context) == {"text": 0.2}


def test_prompt_is_found_by_textarea_name_not_by_position():
    config = ProjectConfig.parse("""<View><Image name="image" value="$image"/>
      <TextArea name="notes" toName="image"/><TextArea name="prompt" toName="image"/>
      <RectangleLabels name="label" toName="image"><Label value="cat"/></RectangleLabels></View>""")
    context = [
        {"from_name": "label", "type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": 2, "height": 2}},
        {"from_name": "notes", "type": "textarea", "value": {"text": ["blurry"]}},
        {"from_name": "prompt", "type": "textarea", "value": {"text": ["brown dog", " possum "]}},
    ]

    assert config.prompt_from(context) == "brown dog. possum"
    assert config.prompt_from(context[:2]) is None


@pytest.mark.parametrize(
    ("xml", "named"),
    [
        ("", "no labeling config"),
        ("<View><Image name='image' value='$image'>", "not valid"),
        (
            "<View><Text name='t' value='$text'/><Labels name='l' toName='t'><Label value='a'/></Labels></View>",
            "<Image>",
        ),
        (
            "<View><Image name='image' value='$image'/><Choices name='c' toName='image'><Choice value='a'/></Choices></View>",
            "RectangleLabels",
        ),
        ("<View><Image name='image' value='$image'/><RectangleLabels name='boxes' toName='image'/></View>", "boxes"),
    ],
)
def test_configs_missing_what_is_needed_name_it(xml, named):
    with pytest.raises(ConfigError, match=named):
        ProjectConfig.parse(xml)


def test_task_without_the_image_field_names_the_field():
    config = ProjectConfig.parse(GROUNDING_DINO_CONFIG)

    assert config.image_url({"image": " /data/upload/1/a.png "}) == "/data/upload/1/a.png"
    with pytest.raises(ConfigError, match=r"data\['image'\].*\['picture'\]"):
        config.image_url({"picture": "x.png"})


def test_label_colours_are_read_from_the_config_as_label_studio_shows_them():
    config = ProjectConfig.parse(
        GROUNDING_DINO_CONFIG.replace('background="blue"', 'background="#1f77b4"', 1)
        .replace('<Label value="house" background="blue"/>', '<Label value="house"/>', 1)
        .replace('value="cats" background="yellow"', 'value="cats" background="not a colour"', 1)
    )
    assert config.label_colors() == {"house": (31, 119, 180), "cats": (255, 255, 0)}  # the brush tag's yellow
    assert ProjectConfig.parse(GROUNDING_DINO_CONFIG).label_colors() == {"cats": (255, 255, 0), "house": (0, 0, 255)}
