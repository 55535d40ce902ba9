"""``refstore.lock``: the data a commit was made with, as a small text file git can diff and merge.

Layout (format 1)::

    # refstore.lock 1 - data pinned by this commit; written by 'refstore track', merged by 'refstore lock-merge'
    # path<TAB>artifact<TAB>version<TAB>manifest digest

    data/<TAB>default/mnist<TAB>v3<TAB>9f2c…

    model.pt<TAB>default/net<TAB>v0<TAB>41aa…

One line per tracked path, sorted by path; a directory ends in ``/``. Each
entry is followed by a blank line so that git's ordinary line merge sees an
unchanged line between any two entries: two branches that change or add
different paths merge cleanly even without the merge driver. The digest is
authoritative (version numbers are local to a store); the version is there
for people reading diffs. The merge driver (:func:`merge`) merges per path
and reports a real conflict (both sides changed one path differently) with
conflict markers around that entry only.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from refstore.core.names import split_name
from refstore.core.objects import fsync_dir, named_temp_beside
from refstore.core.paths import normalize
from refstore.errors import ConflictError, FormatError, UsageError

LOCK_NAME = "refstore.lock"
GUARD_NAME = "lockfile.guard"
FORMAT = 1
HEADER = (
    f"# {LOCK_NAME} {FORMAT} - data pinned by this commit; written by 'refstore track', merged by 'refstore lock-merge'\n"
    "# path\tartifact\tversion\tmanifest digest\n"
)
_HEADER_RE = re.compile(r"^# refstore\.lock (\d+)\b")
_VERSION_RE = re.compile(r"^v\d+$")
_DIGEST_RE = re.compile(r"^[0-9a-f]{16,128}$")
_MARKERS = ("<<<<<<<", "=======", ">>>>>>>", "|||||||")


@dataclass(frozen=True, order=True)
class Pin:
    """One tracked path and the exact version it is pinned to."""

    path: str  # relative POSIX path from the lock's directory, no trailing slash
    is_dir: bool
    artifact: str  # project/name
    version: str  # vN, informative
    digest: str  # manifest root digest, authoritative

    @property
    def display(self) -> str:
        """The path as written in the lock and shown to users (directories end in ``/``)."""
        return self.path + "/" if self.is_dir else self.path

    @property
    def spec(self) -> str:
        """A version spec that names exactly this content."""
        return f"{self.artifact}@{self.digest}"

    @property
    def label(self) -> str:
        return f"{self.artifact}:{self.version} ({self.digest[:12]})"

    def line(self) -> str:
        return f"{self.display}\t{self.artifact}\t{self.version}\t{self.digest}"


def check_lock_path(text: str) -> tuple[str, bool]:
    """Validate a path as written in the lock; return it without the slash, and whether it is a directory."""
    is_dir = text.endswith("/")
    if any(c in text for c in "\t\n\r"):
        raise UsageError(f"tracked path {text!r} contains a tab or newline; rename it")
    clean = normalize(text)
    if clean != text.rstrip("/"):
        raise UsageError(f"tracked path {text!r} is not normalized (expected {clean!r})")
    return clean, is_dir


def parse_line(line: str, where: str) -> Pin:
    fields = line.split("\t")
    if len(fields) != 4:
        raise FormatError(f"{where}: expected 4 tab-separated fields (path, artifact, version, digest); fix or restore the line")
    path_text, artifact, version, digest = fields
    try:
        path, is_dir = check_lock_path(path_text)
        project, _ = split_name(artifact)
    except UsageError as exc:
        raise FormatError(f"{where}: {exc.message}") from exc
    if project is None:
        raise FormatError(f"{where}: artifact {artifact!r} must be written as project/name")
    if not _VERSION_RE.match(version):
        raise FormatError(f"{where}: version {version!r} is not vN")
    if not _DIGEST_RE.match(digest):
        raise FormatError(f"{where}: {digest!r} is not a manifest digest")
    return Pin(path, is_dir, artifact, version, digest)


def parse(text: str, source: str = LOCK_NAME) -> list[Pin]:
    """Pins in ``text``, validated; refuses conflict markers, duplicates and nested paths."""
    pins: list[Pin] = []
    seen_header = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        where = f"{source} line {number}"
        if line.startswith(_MARKERS):
            raise ConflictError(
                f"{where}: unresolved merge conflict; keep one line per path (or run 'refstore track PATH'), "
                f"then 'git add {LOCK_NAME}'"
            )
        match = _HEADER_RE.match(line)
        if match:
            if int(match.group(1)) > FORMAT:
                raise FormatError(f"{source} has format {match.group(1)}, newer than this refstore ({FORMAT}); upgrade refstore")
            seen_header = True
            continue
        if not line.strip() or line.startswith("#"):
            continue
        if not seen_header:
            raise FormatError(f"{where}: {source} has no '# {LOCK_NAME} N' header; it is not a refstore lock file")
        pins.append(parse_line(line, where))
    check_pins(pins, source)
    return sorted(pins)


def check_pins(pins: Sequence[Pin], source: str = LOCK_NAME) -> None:
    """No path twice, and no tracked path inside another (checkout of one would delete the other)."""
    ordered = sorted(pins, key=lambda p: p.path)
    for before, after in itertools.pairwise(ordered):
        if before.path == after.path:
            raise FormatError(f"{source} pins {before.display} twice; keep one line")
        if after.path.startswith(before.path + "/"):
            raise UsageError(f"{source}: {after.display} is inside tracked {before.display}; track one or the other")


def render(pins: Iterable[Pin]) -> str:
    """Canonical text: header, then each entry followed by a blank line, sorted by path."""
    body = "".join(f"\n{pin.line()}\n" for pin in sorted(pins, key=lambda p: p.path))
    return HEADER + body


@dataclass
class LockFile:
    """``refstore.lock`` in a working-tree root."""

    root: Path

    @property
    def path(self) -> Path:
        return self.root / LOCK_NAME

    def exists(self) -> bool:
        return self.path.is_file()

    def read(self) -> list[Pin]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return parse(text, str(self.path))

    @contextmanager
    def editing(self, guard_dir: Path) -> Iterator[None]:
        """Serialise read-modify-write of this lock between processes (``guard_dir``: the store directory).

        The lock file is replaced by rename, so the advisory lock is taken on a
        separate file that never moves.
        """
        fd = os.open(guard_dir / GUARD_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def write(self, pins: Iterable[Pin]) -> None:
        """Replace the lock atomically (temp file, fsync, rename)."""
        pins = list(pins)
        check_pins(pins)
        temp = named_temp_beside(self.path)
        try:
            with open(temp, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(render(pins))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        finally:
            temp.unlink(missing_ok=True)
        fsync_dir(self.root)


# -- three-way merge (the git merge driver) -------------------------------------


@dataclass(frozen=True)
class Conflict:
    path: str
    base: Pin | None
    ours: Pin | None
    theirs: Pin | None

    def describe(self) -> str:
        def side(pin: Pin | None) -> str:
            return pin.label if pin is not None else "nothing (untracked)"

        return f"{self.path}: ours pins {side(self.ours)}, theirs pins {side(self.theirs)}; base had {side(self.base)}"


def merge(base: Sequence[Pin], ours: Sequence[Pin], theirs: Sequence[Pin]) -> tuple[list[Pin], list[Conflict]]:
    """Merge per path: a side that did not change a path takes the other side's change."""
    by_base = {p.path: p for p in base}
    by_ours = {p.path: p for p in ours}
    by_theirs = {p.path: p for p in theirs}
    merged: list[Pin] = []
    conflicts: list[Conflict] = []
    for path in sorted(by_base.keys() | by_ours.keys() | by_theirs.keys()):
        b, o, t = by_base.get(path), by_ours.get(path), by_theirs.get(path)
        same = (o.is_dir, o.artifact, o.digest) == (t.is_dir, t.artifact, t.digest) if o and t else o is t
        if same or t == b:
            chosen = o
        elif o == b:
            chosen = t
        else:
            display = next(p.display for p in (o, t, b) if p is not None)
            conflicts.append(Conflict(display, b, o, t))
            continue
        if chosen is not None:
            merged.append(chosen)
    return merged, conflicts


def render_with_conflicts(merged: Sequence[Pin], conflicts: Sequence[Conflict]) -> str:
    """Lock text where each conflicting path is wrapped in git-style conflict markers."""
    blocks: list[tuple[str, str]] = [(pin.path, f"\n{pin.line()}\n") for pin in merged]
    for conflict in conflicts:
        ours = conflict.ours.line() + "\n" if conflict.ours else ""
        theirs = conflict.theirs.line() + "\n" if conflict.theirs else ""
        blocks.append((conflict.path.rstrip("/"), f"\n<<<<<<< ours\n{ours}=======\n{theirs}>>>>>>> theirs\n"))
    return HEADER + "".join(text for _, text in sorted(blocks))


# -- .gitignore and .gitattributes ----------------------------------------------

ATTRIBUTES_LINE = f"/{LOCK_NAME} merge=refstore"


def ensure_line(file: Path, line: str) -> bool:
    """Append ``line`` to a text file unless present; True when the file changed."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    if line in (existing.strip() for existing in text.splitlines()):
        return False
    prefix = "" if not text or text.endswith("\n") else "\n"
    temp = named_temp_beside(file)
    try:
        temp.write_text(text + prefix + line + "\n", encoding="utf-8")
        os.replace(temp, file)
    finally:
        temp.unlink(missing_ok=True)
    return True


def ignore_line(pin: Pin) -> str:
    """The anchored ``.gitignore`` pattern for a tracked path (``/data/`` or ``/model.pt``)."""
    escaped = re.sub(r"([*?\[\\])", r"\\\1", pin.display)
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return "/" + escaped
