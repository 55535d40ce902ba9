"""The ``refstore`` command line: parse, call the API, print. No logic of its own.

Each module below attaches its commands to :data:`cli` when imported.
"""

from refstore.cli import artifacts, maintenance  # noqa: F401  (registers commands)
from refstore.cli.main import cli, main

__all__ = ["cli", "main"]
