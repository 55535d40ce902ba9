"""Lineage graphs as text, JSON, Graphviz DOT and Mermaid.

Node identifiers in DOT and Mermaid are generated (``v12``, ``r_3f2a…``), never
taken from user text; labels are escaped for each language so a name with
quotes, brackets or newlines cannot break the document.
"""

from __future__ import annotations

import re

from refstore.errors import UsageError
from refstore.services.lineage import Graph, Node

FORMATS = ("text", "json", "dot", "mermaid")


def node_id(key: str) -> str:
    """A DOT/Mermaid-safe identifier for a node key."""
    kind, _, ident = key.partition(":")
    return ("v" if kind == "version" else "r_") + re.sub(r"[^A-Za-z0-9_]", "_", ident)


def _dot_label(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "") + '"'


def to_dot(graph: Graph) -> str:
    lines = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for node in graph.nodes:
        shape = "box" if node.kind == "version" else "ellipse"
        style = ', style="bold"' if node.key == graph.root else ""
        lines.append(f"  {node_id(node.key)} [label={_dot_label(_label(node))}, shape={shape}{style}];")
    for edge in graph.edges:
        lines.append(f"  {node_id(edge.source)} -> {node_id(edge.target)} [label={_dot_label(edge.kind)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_label(text: str) -> str:
    escaped = "".join(f"#{ord(c)};" if c in '"#<>[](){}|`' else c for c in text.replace("\r", "").replace("\n", " "))
    return f'"{escaped}"'


def to_mermaid(graph: Graph) -> str:
    lines = ["flowchart LR"]
    for node in graph.nodes:
        label = _mermaid_label(_label(node))
        shape = f"[{label}]" if node.kind == "version" else f"([{label}])"
        lines.append(f"  {node_id(node.key)}{shape}")
    for edge in graph.edges:
        lines.append(f"  {node_id(edge.source)} -->|{edge.kind}| {node_id(edge.target)}")
    return "\n".join(lines) + "\n"


def _label(node: Node) -> str:
    if node.kind == "run":
        return f"{node.label} ({node.data.get('status', '?')})"
    return node.label


def to_text(graph: Graph) -> str:
    """An indented tree from the root; a node reached again is printed once more with '(see above)'."""
    children: dict[str, list[str]] = {}
    for edge in graph.edges:
        a, b = (edge.source, edge.target) if graph.direction == "downstream" else (edge.target, edge.source)
        children.setdefault(a, []).append(b)
    by_key = {n.key: n for n in graph.nodes}
    lines: list[str] = []
    seen: set[str] = set()
    arrow = "<-" if graph.direction == "upstream" else "->"

    def describe(node: Node) -> str:
        if node.kind == "run":
            return f"run {node.data.get('run_id')} {node.label} [{node.data.get('status', '?')}]"
        return f"{node.data.get('project', '')}/{node.label} ({node.data.get('type', '')})"

    stack: list[tuple[str, int]] = [(graph.root, 0)]
    while stack:
        key, level = stack.pop()
        node = by_key[key]
        prefix = "" if level == 0 else "  " * (level - 1) + f"{arrow} "
        if key in seen:
            lines.append(f"{prefix}{describe(node)} (see above)")
            continue
        seen.add(key)
        lines.append(prefix + describe(node))
        kids = sorted(children.get(key, ()), key=lambda k: (by_key[k].label, k))
        stack.extend((kid, level + 1) for kid in reversed(kids))
    return "\n".join(lines) + "\n"


def render(graph: Graph, fmt: str) -> str:
    if fmt == "json":
        return graph.to_json() + "\n"
    if fmt == "dot":
        return to_dot(graph)
    if fmt == "mermaid":
        return to_mermaid(graph)
    if fmt == "text":
        return to_text(graph)
    raise UsageError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
