"""Lineage queries and their DOT, Mermaid, text and JSON renderings."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import Cli

import refstore
from refstore.errors import NotFoundError, UsageError
from refstore.services.graph_format import render


def _art(name: str, content: str, type: str = "dataset") -> refstore.Artifact:
    art = refstore.Artifact(name, type=type)
    with art.new_file("f.txt") as handle:
        handle.write(content)
    return art


@pytest.fixture
def pipeline(store: refstore.Store) -> refstore.Store:
    """raw:v0 -> prep -> clean:v0 -> train -> model:v0 -> eval -> report:v0; extra:v0 -> train; raw:v0 -> audit."""
    store.log_artifact(_art("raw", "r"))
    store.log_artifact(_art("extra", "x"))
    with store.run(job_type="prep", name="prep-1") as run:
        run.use_artifact("raw:v0")
        run.log_artifact(_art("clean", "c"))
    with store.run(job_type="train", name='cnn "big" <v2>') as run:
        run.use_artifact("clean:v0")
        run.use_artifact("extra:v0")
        run.log_artifact(_art("model", "m", type="model"))
    with store.run(job_type="eval", name="eval-1") as run:
        run.use_artifact("model:v0")
        run.log_artifact(_art("report", "p"))
    with store.run(job_type="audit", name="audit-1") as run:
        run.use_artifact("raw:v0")
    return store


def labels(graph: object) -> set[str]:
    return {n.label for n in graph.nodes}  # type: ignore[attr-defined]


def test_downstream_upstream_and_depth(pipeline: refstore.Store) -> None:
    down = pipeline.lineage("raw:v0")
    assert labels(down) == {
        "raw:v0",
        "prep prep-1",
        "clean:v0",
        'train cnn "big" <v2>',
        "model:v0",
        "eval eval-1",
        "report:v0",
        "audit audit-1",
    }
    depth = {n.label: n.depth for n in down.nodes}
    assert depth["raw:v0"] == 0 and depth["prep prep-1"] == 1 and depth["report:v0"] == 6
    assert "extra:v0" not in labels(down)  # a sibling input is not downstream
    up = pipeline.lineage("model:v0", "upstream")
    assert labels(up) == {"model:v0", 'train cnn "big" <v2>', "clean:v0", "extra:v0", "prep prep-1", "raw:v0"}
    near = pipeline.lineage("model:v0", "upstream", depth=2)
    assert labels(near) == {"model:v0", 'train cnn "big" <v2>', "clean:v0", "extra:v0"}
    assert labels(pipeline.lineage("raw:v0", depth=0)) == {"raw:v0"}
    kinds = {(e.kind, e.source.split(":")[0], e.target.split(":")[0]) for e in down.edges}
    assert kinds == {("uses", "version", "run"), ("logs", "run", "version")}


def test_lineage_from_a_run(pipeline: refstore.Store) -> None:
    train = pipeline.runs(filter={"job_type": "train"})[0]
    graph = pipeline.lineage(f"run:{train.id[:8]}")
    assert labels(graph) == {'train cnn "big" <v2>', "model:v0", "eval eval-1", "report:v0"}


def test_bad_lineage_requests(pipeline: refstore.Store) -> None:
    with pytest.raises(NotFoundError):
        pipeline.lineage("nope:v0")
    with pytest.raises(UsageError):
        pipeline.lineage("raw:v0", "sideways")
    with pytest.raises(UsageError):
        pipeline.lineage("raw:v0", depth=-1)


DOT_NODE = re.compile(r'^\s*(\w+) \[label="((?:[^"\\]|\\.)*)", shape=(box|ellipse)(?:, style="bold")?\];$')
DOT_EDGE = re.compile(r'^\s*(\w+) -> (\w+) \[label="(uses|logs)"\];$')


def parse_dot(text: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    lines = text.strip().splitlines()
    assert lines[0] == "digraph lineage {" and lines[-1] == "}"
    nodes: dict[str, str] = {}
    edges: set[tuple[str, str]] = set()
    for line in lines[1:-1]:
        if m := DOT_NODE.match(line):
            nodes[m.group(1)] = re.sub(r"\\(.)", r"\1", m.group(2))
        elif m := DOT_EDGE.match(line):
            edges.add((m.group(1), m.group(2)))
        else:
            assert line.strip() in ("rankdir=LR;", 'node [fontname="Helvetica"];'), line
    assert all(a in nodes and b in nodes for a, b in edges)
    return nodes, edges


MERMAID_NODE = re.compile(r'^  (\w+)(?:\["([^"]*)"\]|\(\["([^"]*)"\]\))$')
MERMAID_EDGE = re.compile(r"^  (\w+) -->\|(uses|logs)\| (\w+)$")


def parse_mermaid(text: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    lines = text.rstrip("\n").splitlines()
    assert lines[0] == "flowchart LR"
    nodes: dict[str, str] = {}
    edges: set[tuple[str, str]] = set()
    for line in lines[1:]:
        if m := MERMAID_NODE.match(line):
            label = m.group(2) if m.group(2) is not None else m.group(3)
            nodes[m.group(1)] = re.sub(r"#(\d+);", lambda x: chr(int(x.group(1))), label)
        elif m := MERMAID_EDGE.match(line):
            edges.add((m.group(1), m.group(3)))
        else:
            raise AssertionError(f"unparsable mermaid line {line!r}")
    assert all(a in nodes and b in nodes for a, b in edges)
    return nodes, edges


def test_dot_and_mermaid_parse_back_to_the_graph(pipeline: refstore.Store) -> None:
    graph = pipeline.lineage("raw:v0")
    dot_nodes, dot_edges = parse_dot(render(graph, "dot"))
    mer_nodes, mer_edges = parse_mermaid(render(graph, "mermaid"))
    assert len(dot_nodes) == len(graph.nodes) == len(mer_nodes)
    assert len(dot_edges) == len(graph.edges) == len(mer_edges)
    assert dot_nodes == mer_nodes
    assert 'train cnn "big" <v2> (finished)' in dot_nodes.values()  # quotes and brackets survive escaping
    data = json.loads(render(graph, "json"))
    assert {e["from"] for e in data["edges"]} <= {n["id"] for n in data["nodes"]}


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz 'dot' is not installed")
def test_graphviz_renders_the_dot(pipeline: refstore.Store, tmp_path: Path) -> None:
    source = render(pipeline.lineage("raw:v0"), "dot")
    proc = subprocess.run(["dot", "-Tsvg"], input=source, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('class="node"') == 8 and proc.stdout.count('class="edge"') == 7
    assert "cnn &quot;big&quot; &lt;v2&gt;" in proc.stdout


def test_text_rendering_marks_repeats(store: refstore.Store) -> None:
    store.log_artifact(_art("a", "1"))
    with store.run(job_type="split", name="s") as run:
        run.use_artifact("a:v0")
        run.log_artifact(_art("left", "l"))
        run.log_artifact(_art("right", "r"))
    with store.run(job_type="join", name="j") as run:
        run.use_artifact("left:v0")
        run.use_artifact("right:v0")
    text = render(store.lineage("a:v0"), "text")
    assert text.splitlines()[0] == "default/a:v0 (dataset)"
    assert sum("join j" in line for line in text.splitlines()) == 2
    assert text.count("(see above)") == 1


def test_lineage_cli_formats_and_errors(pipeline: refstore.Store, run_cli: Cli) -> None:
    out = run_cli("lineage", "model:v0", "--upstream", "--format", "json").stdout
    data = json.loads(out)
    assert data["direction"] == "upstream" and len(data["nodes"]) == 6
    assert json.loads(run_cli("lineage", "raw:v0", "--json", "--depth", "1").stdout)["depth"] == 1
    parse_dot(run_cli("lineage", "raw:v0", "--format", "dot").stdout)
    parse_mermaid(run_cli("lineage", "raw:v0", "--format", "mermaid").stdout)
    assert run_cli("lineage", "raw:v0").stdout.startswith("default/raw:v0 (dataset)\n-> run ")
    bad = run_cli("lineage", "missing:v0", expect=5)
    assert bad.stderr.startswith("refstore: error: ") and bad.stdout == ""
    run_cli("lineage", "raw:v0", "--depth", "-1", expect=2)


def test_an_artifact_named_run_is_still_a_version_root(store: refstore.Store) -> None:
    store.log_artifact(_art("run", "r"))
    with store.run(job_type="use") as run:
        run.use_artifact("run:v0")
    assert {n.label for n in store.lineage("run:v0").nodes} == {"run:v0", f"use use-{run.id[:8]}"}
    assert {n.label for n in store.lineage(f"run:{run.id}").nodes} == {f"use use-{run.id[:8]}"}
    with pytest.raises(NotFoundError):
        store.lineage("run:ffffffff")
