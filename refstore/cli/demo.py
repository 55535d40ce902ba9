"""A two-minute demo of the main job on the embedded default: a local ``.refstore``.

    refstore demo [DIRECTORY]

Creates DIRECTORY (default: a new temp directory), generates a small dataset,
and walks through init → put → unchanged put → change → put → log → diff →
get → verify using the public Python API, printing what happens. Everything
stays inside DIRECTORY; nothing touches the network.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import click

import refstore


def say(text: str) -> None:
    click.echo(text)


def make_dataset(root: Path, files: int = 200) -> None:
    rng = random.Random(0)
    for index in range(files):
        path = root / f"class{index % 10}" / f"sample{index:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(512, 4096)))
    (root / "labels.csv").write_text("".join(f"sample{i:04d},{i % 10}\n" for i in range(files)))


def run(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "data"
    make_dataset(data)
    say(f"$ cd {directory} && refstore init")
    store = refstore.init(directory)

    def put(note: str) -> refstore.ArtifactVersion:
        art = refstore.Artifact("mnist", type="dataset", metadata={"source": "demo"})
        art.add_dir(data)
        version = store.log_artifact(art, aliases=["raw"] if note == "first" else [])
        state = "new version" if version.created else "unchanged (no new version)"
        say(
            f"$ refstore put data/ --name mnist   # {note}\n  -> {version.name}:{version.version} {state}, "
            f"digest {version.digest[:12]}, {version.file_count} files, {version.size} bytes"
        )
        return version

    v0 = put("first")
    put("nothing changed")
    with open(data / "labels.csv", "a") as handle:
        handle.write("sample9999,3\n")
    (data / "class3" / "sample9999.bin").write_bytes(b"new sample")
    v1 = put("one file changed, one added")
    say("$ refstore log mnist")
    for version in store.versions("mnist"):
        say(f"  {version.version} ({', '.join(version.aliases)}) {version.digest[:12]} {version.file_count} files")
    say("$ refstore diff mnist:v0 mnist:v1")
    for change in store.diff("mnist:v0", "mnist:v1"):
        say(f"  {change.status:8} {change.path}")
    target = v0.download(directory / "checkout-v0", link="hardlink")
    say(f"$ refstore get mnist:raw -o checkout-v0 --link hardlink\n  -> {target} (read-only links into the cache)")
    v0.verify(target)
    say("  verified: every file matches mnist:v0")
    report = store.verify()
    say(f"$ refstore verify\n  -> ok={report.ok}: {report.objects_checked} objects, {report.records_checked} manifest records")
    say(f"\nThe store is {store.path}; try: refstore -C {directory} log mnist   (latest is {v1.version})")
    store.close()


@click.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
def demo(directory: Path | None) -> None:
    """Run a short tour of refstore in DIRECTORY (default: a new temp directory)."""
    run((directory or Path(tempfile.mkdtemp(prefix="refstore-demo-"))).absolute())
