"""BackendSettings keeps one default ``Options``: the keyword shorthands set its fields, the settings read them back."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline import DEFAULT_TEXT_THRESHOLD, Options, SettingsError
from sync import BackendSettings


def test_keyword_shorthands_set_the_one_default_options_value():
    settings = BackendSettings(box_threshold=0.2, segmenter=None)

    assert settings.defaults == Options(0.2, DEFAULT_TEXT_THRESHOLD, None)
    assert (settings.box_threshold, settings.text_threshold, settings.segmenter) == (0.2, DEFAULT_TEXT_THRESHOLD, None)
    assert settings.options(masks=True) == settings.defaults
    assert replace(settings, port=8000).defaults == settings.defaults  # a copy keeps them


def test_the_default_segmenter_runs_only_when_masks_are_wanted_and_bad_values_fail_at_once():
    settings = BackendSettings(text_threshold=0.1)

    assert settings.options().segmenter == "mobile_sam" and settings.options(masks=False).segmenter is None
    assert settings.options(masks=False).text_threshold == 0.1
    with pytest.raises(SettingsError, match="Box threshold"):
        BackendSettings(box_threshold=1.5)
