"""Documentation stays true: every command has help text and docs/cli.md matches it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import click

from refstore.cli import cli

DOCS = Path(__file__).resolve().parent.parent / "docs"


def load_generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_cli", DOCS / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_cli"] = module
    spec.loader.exec_module(module)
    return module


def test_every_command_has_help() -> None:
    gen = load_generator()
    for path in gen.command_paths(cli, []):
        command: click.Command = cli
        for name in path:
            assert isinstance(command, click.Group)
            found = command.get_command(click.Context(command), name)
            assert found is not None
            command = found
        assert command.help and command.help.strip(), f"refstore {' '.join(path)} has no help text"


def test_cli_reference_is_current() -> None:
    expected = load_generator().render()
    actual = (DOCS / "cli.md").read_text()
    assert actual == expected, "docs/cli.md is stale: run `python docs/gen_cli.py > docs/cli.md`"


def test_docs_mention_every_command_in_readme_or_guide() -> None:
    guide = (DOCS / "cli.md").read_text()
    for name in cli.list_commands(click.Context(cli)):
        assert f"## refstore {name}" in guide


def test_format_spec_states_the_current_format_version() -> None:
    """docs/format.md is authoritative, so its version table must follow the migrations."""
    from refstore.core.db import FORMAT_VERSION, MIGRATIONS

    spec = (DOCS / "format.md").read_text(encoding="utf-8")
    assert f"| current format version | {FORMAT_VERSION} |" in spec
    for number, (name, _) in enumerate(MIGRATIONS, start=1):
        assert f"**{number}**" in spec or number == 1, f"docs/format.md History lacks format {number} ({name})"
