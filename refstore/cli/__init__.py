"""The ``refstore`` command line: parse, call the API, print. No logic of its own.

Commands live in one module per topic and are listed in ``main.COMMANDS``,
which loads each module only when its command runs.
"""

from refstore.cli.main import cli, main

__all__ = ["cli", "main"]
