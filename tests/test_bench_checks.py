"""The benches' goals: a missed goal is a FAIL row and, with ``--check``, exit status 1; ``--update-docs`` writes a
table between its markers. No Label Studio, no browser: the tests' tiny detector only."""

from __future__ import annotations

import argparse

import pytest

from bench import common, pipeline_speed
from bench.common import Goal, Table, add_check_arguments, finish, update_docs


def arguments(*flags: str) -> argparse.Namespace:
    return add_check_arguments(argparse.ArgumentParser()).parse_args(list(flags))


def overhead_table(*ratios: float) -> Table:
    goal = Goal("overhead / model time", "<=", 0.10)
    table = Table("server_overhead", "overhead", ("task", "overhead / model time"))
    for i, ratio in enumerate(ratios):
        table.add(f"task {i}", f"{ratio:.2f}", checks=[(goal, ratio)])
    return table


def test_a_missed_goal_is_a_fail_row_and_check_exits_1(capsys):
    with pytest.raises(SystemExit) as exit:
        finish(arguments("--check"), overhead_table(0.05, 0.43))
    assert exit.value.code == 1
    out = capsys.readouterr().out
    assert "| task 0 | 0.05 | overhead / model time <= 0.1 | PASS |" in out
    assert "| task 1 | 0.43 | overhead / model time <= 0.1 | FAIL: overhead / model time 0.43 |" in out
    assert "1 of 2 goals met" in out


def test_without_check_a_missed_goal_is_reported_and_the_run_ends_normally(capsys):
    finish(arguments(), overhead_table(0.43))
    assert "FAIL server_overhead: task 0: overhead / model time <= 0.1 missed (0.43)" in capsys.readouterr().out


def test_goals_met_pass_the_check(capsys):
    finish(arguments("--check"), overhead_table(0.05, 0.10))
    assert "2 of 2 goals met" in capsys.readouterr().out


def test_a_figure_that_is_not_a_number_misses_its_goal():
    assert not Goal("speed-up", ">=", 2.0, "x").met(float("nan"))
    assert Goal("speed-up", ">=", 2.0, "x").met(2.0) and not Goal("speed-up", ">", 2.0, "x").met(2.0)
    with pytest.raises(ValueError):
        Goal("speed-up", "=>", 2.0)


def test_update_docs_rewrites_only_between_the_markers(tmp_path):
    docs = tmp_path / "performance.md"
    docs.write_text("prose before\n<!-- bench:memory -->\nold table\n<!-- /bench:memory -->\nprose after\n")
    update_docs(docs, {"memory": "| new | table |"})
    assert docs.read_text() == (
        "prose before\n<!-- bench:memory -->\n| new | table |\n<!-- /bench:memory -->\nprose after\n"
    )
    with pytest.raises(SystemExit, match="no <!-- bench:smart_click -->"):
        update_docs(docs, {"smart_click": "| table |"})


def test_pipeline_speed_fails_its_threshold_row_when_the_raw_output_cache_misses(tmp_path, monkeypatch, capsys):
    import pipeline.detector

    init = pipeline.detector.CachedDetector.__init__

    def missing_cache(self, *args, **kwargs):
        init(self, *args, **kwargs)
        monkeypatch.setattr(self._raw_cache, "get", lambda key: None)  # every threshold change runs the model

    monkeypatch.setattr(pipeline.detector.CachedDetector, "__init__", missing_cache)
    monkeypatch.setattr(common, "MODELS_DIR", tmp_path)
    docs = tmp_path / "performance.md"
    docs.write_text("<!-- bench:pipeline_speed -->\n<!-- /bench:pipeline_speed -->\n")
    argv = ["--shape", "tiny", "--segmenters", "--size", "320x240", "--input-size", "240", "--repeats", "3"]
    argv += ["--full-repeats", "1"]
    with pytest.raises(SystemExit) as exit:
        pipeline_speed.main([*argv, "--check", "--update-docs", str(docs)])
    assert exit.value.code == 1
    row = next(line for line in docs.read_text().splitlines() if line.startswith("| threshold change"))
    assert "| cached / full <= 0.01 | FAIL: cached / full " in row, row
    assert "0 of 1 goals met" in capsys.readouterr().out
