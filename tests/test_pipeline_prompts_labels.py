"""Prompt parsing and label mapping: what the detector is asked, and which project label each phrase becomes."""

import pytest

from pipeline import LabelMap, PromptError, parse_prompt


def test_prompt_is_lower_case_dot_separated_phrases():
    prompt = parse_prompt("  Brown Dog. possum   on a fence ,cat;DOG\n")
    assert prompt.phrases == ("brown dog", "possum on a fence", "cat", "dog")
    assert prompt.text == "brown dog. possum on a fence. cat. dog."


def test_prompt_accepts_a_list_and_drops_duplicates_keeping_order():
    assert parse_prompt(["cat", "Dog", "cat", " "]).phrases == ("cat", "dog")


def test_prompt_phrase_with_colon_names_its_label():
    prompt = parse_prompt("brown dog:Dog. possum")
    assert prompt.phrases == ("brown dog", "possum")
    assert prompt.explicit_labels == {"brown dog": "Dog"}


@pytest.mark.parametrize("text", ["", "   ", " . , ;", ["", " "]])
def test_empty_prompt_raises_a_clear_error(text):
    with pytest.raises(PromptError, match="prompt is empty"):
        parse_prompt(text)


def test_without_target_labels_each_phrase_is_its_own_label():
    assert LabelMap().label_for("possum on a fence") == "possum on a fence"


@pytest.mark.parametrize(
    ("phrase", "label"),
    [
        ("dog", "Dog"),
        ("DOG", "Dog"),
        ("dogs", "Dog"),
        ("boxes", "Box"),
        ("berries", "Berry"),
        ("bus", None),
        ("cat", None),
        ("hot dog", None),
    ],
)
def test_phrases_map_by_case_and_plural_never_by_guess(phrase, label):
    assert LabelMap(["Dog", "Box", "Berry"]).label_for(phrase) == label


def test_explicit_label_wins_and_must_be_a_target_label():
    labels = LabelMap(["Dog", "Possum"])
    assert labels.label_for("brown dog", {"brown dog": "dog"}) == "Dog"
    assert labels.label_for("brown dog", {"brown dog": "wolf"}) is None


def test_aliases_from_predicted_values_map_phrases_to_labels():
    labels = LabelMap(["Animal"], aliases={"Animal": ["cat", "Dog"]})
    assert labels.label_for("dog") == "Animal"
    assert labels.unmapped(["cat", "dog", "tree"]) == ["tree"]
