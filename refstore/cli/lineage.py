"""The lineage command: what a version came from, or what it fed."""

from __future__ import annotations

import click

from refstore.cli.main import Context
from refstore.services.graph_format import FORMATS, render

pass_state = click.make_pass_decorator(Context)


@click.command("lineage")
@click.argument("spec")
@click.option("--upstream", "direction", flag_value="upstream", help="What SPEC came from (runs and their inputs).")
@click.option("--downstream", "direction", flag_value="downstream", default=True, help="What SPEC fed (the default).")
@click.option("--depth", type=click.IntRange(min=0), help="Stop after N edges (default: all the way).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True, help="Output format.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@pass_state
def lineage(state: Context, spec: str, direction: str, depth: int | None, fmt: str, as_json: bool) -> None:
    """Show the runs and versions upstream or downstream of SPEC (a version spec, or run:ID)."""
    graph = state.store().lineage(spec, direction, depth)
    click.echo(render(graph, "json" if as_json else fmt), nl=False)
