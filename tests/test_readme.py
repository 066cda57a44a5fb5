"""The README is the first ten minutes: the Spaces card, the two set-up commands, what groundlabel is, a table of
contents and the ML-backend setup, in that order; its links, commands and variables are checked against the code
(and docs/configuration.md's full table against what the settings read, both ways)."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
# Read by a library rather than by groundlabel's settings (huggingface_hub reads HF_TOKEN for gated downloads).
READ_BY_LIBRARIES = {"HF_TOKEN"}
SUBCOMMAND = re.compile(r"[a-z][a-z-]+")


def card_and_body() -> tuple[dict[str, str], str]:
    assert README.startswith("---\n")  # Hugging Face reads the Space's card only at the very top
    end = README.index("\n---\n", 3)
    card = dict(line.split(": ", 1) for line in README[4:end].splitlines())
    return card, README[end + len("\n---\n") :]


def test_the_spaces_card_comes_first_and_fits_the_hubs_limits():
    card, _ = card_and_body()
    assert card["sdk"] == "gradio" and (ROOT / card["app_file"]).is_file()
    assert len(card["short_description"]) <= 60  # the Hub refuses a longer one


def test_the_two_set_up_commands_come_right_after_the_card_with_what_they_need_beside_them():
    _, body = card_and_body()
    lines = body.splitlines()
    app, tests = lines[0], lines[1]
    assert app == "    pip install -r requirements.txt && python app.py"
    assert tests.startswith("    apt-get update && apt-get install -y chromium && ")
    assert tests.endswith("pip install -r requirements-test.txt && python -m pytest")
    assert "-r requirements-test.txt" in (ROOT / ".ci" / "run").read_text()  # CI installs the same
    beside = body.split("\n# groundlabel\n", 1)[0]
    for need in ("Python 3.11", "root", "Debian", "internet", "python app.py --demo"):
        assert need in beside, need


def test_what_it_is_then_contents_then_the_ml_backend_setup_within_the_first_100_lines():
    lines = README.splitlines()
    title = lines.index("# groundlabel")
    contents = next(i for i, line in enumerate(lines) if line.startswith("**Contents**"))
    setup = lines.index("## Label Studio ML backend")
    assert title < contents < setup < 100
    assert "ML backend" in "\n".join(lines[title:contents])  # the paragraph says what it is


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
)
def test_every_link_to_a_file_or_heading_exists(page):
    text = (ROOT / page).read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        linked = (ROOT / page).parent / path if path else ROOT / page
        assert linked.exists(), f"{page}: {target}"
        if anchor:
            assert anchor in anchors(linked.read_text()), f"{page}: {target}"


def readme_commands() -> list[str]:
    """Every command the README shows: code blocks (fenced or indented, continued lines joined) and inline code."""
    text = re.sub(r"\\\n\s*", " ", README)
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S) + [
        line for line in text.splitlines() if line.startswith("    ")
    ]
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return [
        line for chunk in blocks + inline for line in chunk.splitlines() if re.search(r"python (-m |app\.py)", line)
    ]


def help_text(module: str, subcommand: str | None, monkeypatch, capsys) -> str:
    """What ``python -m module [subcommand] --help`` prints, run in this process."""
    package = importlib.util.find_spec(module).submodule_search_locations is not None
    main = importlib.import_module(f"{module}.__main__" if package else module).main
    monkeypatch.setattr(sys, "argv", [module, *([subcommand] if subcommand else []), "--help"])
    with pytest.raises(SystemExit):
        main()
    return capsys.readouterr().out


def test_every_readme_command_names_a_module_and_flags_that_exist(monkeypatch, capsys):
    commands = readme_commands()
    assert len(commands) > 20
    checked = set()
    for command in commands:
        for module, rest in re.findall(r"python (?:-m ([\w.]+)|app\.py)([^|;&`]*)", command):
            module = module or "app"
            assert importlib.util.find_spec(module) is not None, command
            flags = re.findall(r"(?<![\w-])--[a-z][\w-]*", rest)
            if module == "pytest" or not flags:
                continue
            first = rest.split()[0] if rest.split() else ""
            subcommand = first if SUBCOMMAND.fullmatch(first) else None
            known = help_text(module, subcommand, monkeypatch, capsys)
            for flag in flags:
                assert flag in known, f"{command}: {flag} is not an option of python -m {module}"
            checked.add(module)
    assert {"app", "pipeline", "sync.prelabel", "sync.export"} <= checked


class Recording(dict):
    """An empty environment that remembers every name the settings look up."""

    def __init__(self):
        super().__init__()
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return default

    def __getitem__(self, key):
        self.read.add(key)
        raise KeyError(key)

    def __contains__(self, key):
        self.read.add(key)
        return False


def documented(table_text: str) -> set[str]:
    """The variable names in the first column of a markdown table (``NAME=value`` counts as NAME)."""
    names = set()
    for line in table_text.splitlines():
        if line.startswith("| `"):
            first_column = line.split(" | ")[0]
            names |= {code.split("=")[0] for code in re.findall(r"`([^`]+)`", first_column)}
    return {name for name in names if re.fullmatch(r"[A-Z][A-Z0-9_<>]*", name)}


def test_every_variable_the_code_reads_is_documented_and_every_documented_one_is_read():
    from sync import BackendSettings

    environment = Recording()
    BackendSettings.from_env(environment)
    read = environment.read
    names = documented(CONFIGURATION)
    patterns = {name: re.compile(re.sub(r"<[A-Z]+>", r"[A-Z0-9_]+", name)) for name in names if "<" in name}

    assert len(read) > 30
    undocumented = {
        name for name in read if name not in names and not any(p.fullmatch(name) for p in patterns.values())
    }
    assert undocumented == set()
    assert {name for name in names - set(patterns) if name not in read} <= READ_BY_LIBRARIES
    assert all(any(pattern.fullmatch(name) for name in read) for pattern in patterns.values())
    assert documented(README) <= names  # the README's short table is a part of the whole one
