"""refstore vs DVC vs cp on generated datasets: the one benchmark entry point.

    python benchmarks/bench.py                          # datasets A and B, 3 repetitions, DVC if found
    python benchmarks/bench.py --datasets A --repeat 5 --dvc /tmp/dvc-venv/bin/dvc
    python benchmarks/bench.py --datasets C --no-dvc --repeat 1     # a million files (slow)
    python benchmarks/bench.py --curve 5000,20000,80000 --no-dvc    # cost per file vs file count
    python benchmarks/bench.py --smoke                  # tiny sizes, one repetition; CI runs this

Datasets (sizes are arguments; the bytes are deterministic, see datasets.py):
A = --a-files files of 1-8 KiB in --a-folders folders, B = --b-files files of
--b-mib MiB, C = --c-files files of 1-4 KiB in --c-folders folders. The curve
uses C's shape at each size.

Every command runs in a subprocess, as a user runs it (start-up included).
refstore and DVC run the same operation on the same bytes in the same run,
alternating (refstore, DVC, refstore, DVC, ...), so a noisy neighbour hurts
both alike. Each row prints the median with min-max, the ratio refstore/DVC,
the ratio to ``cp -a`` (or ``cp -al`` for hardlink checkouts) and peak RSS
from /usr/bin/time (or getrusage of children when it is missing).

DVC is optional. Install it into its own virtualenv, then pass its path:
    python -m venv /tmp/dvc-venv && /tmp/dvc-venv/bin/pip install dvc
    python benchmarks/bench.py --dvc /tmp/dvc-venv/bin/dvc
Push/pull rows appear once refstore has remotes (``refstore.Store.push``);
both tools push to, and pull from, a local-directory remote.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import site
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's refstore, not an installed one
from datasets import PRESETS, Spec, curve_spec, generate

REPO = Path(__file__).resolve().parent.parent
TIME_BIN = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None
DEFAULT_DVC = "/tmp/dvc-venv/bin/dvc"
INSTALL_DVC = "python -m venv /tmp/dvc-venv && /tmp/dvc-venv/bin/pip install dvc"


# -- running and timing -----------------------------------------------------------
@dataclass
class Sample:
    seconds: float
    rss_kib: int


class CommandFailed(Exception):
    pass


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Sample:
    """Wall time and peak RSS of one command; raises CommandFailed with its stderr."""
    full_env = dict(os.environ, PYTHONPATH=str(REPO), DVC_NO_ANALYTICS="1", **(env or {}))
    rss_file = Path(tempfile.mkstemp(prefix="bench-rss-")[1])
    prefix = [TIME_BIN, "-f", "%M", "-o", str(rss_file)] if TIME_BIN else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(prefix + args, cwd=cwd, env=full_env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    try:
        if proc.returncode != 0:
            raise CommandFailed(f"{' '.join(args)} (exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
        if TIME_BIN:
            rss = int(rss_file.read_text().split()[-1])
        else:  # max over all children so far: an upper bound
            rss = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    finally:
        rss_file.unlink(missing_ok=True)
    return Sample(elapsed, rss)


def quiet(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    """An untimed setup command."""
    run(args, cwd, env)


# refstore runs as from a clean virtualenv, as DVC does from its own: without this
# VM's global site-packages ``.pth`` hooks (an editable-install finder and a CA
# bundle hook, 30-40 ms per process that a venv install never pays), and with
# bytecode compiled once (see ``precompile``), as ``pip install`` leaves it.
SITE_DIRS = [p for p in [*site.getsitepackages(), site.getusersitepackages()] if os.path.isdir(p)]
_BOOT = f"import sys\nsys.path[1:1] = {SITE_DIRS!r}\n"


def refstore(*args: str) -> list[str]:
    return [sys.executable, "-S", "-c", _BOOT + "from refstore.cli import main\nmain()", *args]


def python_api(code: str) -> list[str]:
    return [sys.executable, "-S", "-c", _BOOT + f"import refstore\nstore = refstore.open()\n{code}"]


def precompile() -> None:
    """Write refstore's bytecode once: with PYTHONDONTWRITEBYTECODE set (as on this VM) a
    source checkout would otherwise compile every module in every command (~40 ms)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "refstore")], check=False, capture_output=True)


TRASH: list[Path] = []  # while set, rmtree moves trees here; they are deleted after the dataset's rows


def rmtree(path: Path) -> None:
    """``rm -rf`` (read-only files in writable directories go too; far faster than shutil on 1M files).

    Between measurements the tree is only moved aside (see :func:`empty_trash`):
    on ext4 the inode allocator skips inodes freed in the last minute and
    re-scans them on every file creation (``recently_deleted`` in a kernel
    profile: ~60 % of a first ``put`` right after deleting the previous store,
    and the same for DVC), so deleting 20k files just before a run measures the
    harness, not the tool.
    """
    if not (path.exists() or path.is_symlink()):
        return
    if TRASH:
        TRASH[0].mkdir(parents=True, exist_ok=True)
        try:
            os.rename(path, TRASH[0] / f"{len(list(TRASH[0].iterdir()))}-{path.name}")
            return
        except OSError:
            pass
    subprocess.run(["rm", "-rf", str(path)], check=False, capture_output=True)


def empty_trash() -> None:
    """Really delete what :func:`rmtree` moved aside (outside any measurement)."""
    if TRASH:
        trash = TRASH.pop()
        rmtree(trash)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        rmtree(path)
    else:
        path.unlink(missing_ok=True)


def drop_dirty() -> None:
    """Flush dirty pages so one measurement does not pay for the previous one's writeback."""
    os.sync()


@dataclass
class Row:
    dataset: str
    operation: str
    times: dict[str, list[float]] = field(default_factory=dict)  # tool -> seconds
    rss: dict[str, int] = field(default_factory=dict)  # tool -> peak KiB
    errors: dict[str, str] = field(default_factory=dict)
    baseline: str | None = None  # "cp -a" or "cp -al": the reference tool for the ratio

    def add(self, tool: str, sample: Sample) -> None:
        self.times.setdefault(tool, []).append(sample.seconds)
        self.rss[tool] = max(self.rss.get(tool, 0), sample.rss_kib)

    def median(self, tool: str) -> float | None:
        values = self.times.get(tool)
        return statistics.median(values) if values else None


@dataclass
class Tool:
    """One side of a comparison: how to prepare and run one repetition."""

    name: str
    setup: Callable[[], None]
    command: Callable[[], list[str]]
    cwd: Path
    after: Callable[[], None] = lambda: None


def compare(row: Row, repeat: int, tools: list[Tool]) -> Row:
    """Alternate the tools ``repeat`` times; a failing tool is recorded, not fatal."""
    for _ in range(repeat):
        for tool in tools:
            if tool.name in row.errors:
                continue
            try:
                tool.setup()
                drop_dirty()
                row.add(tool.name, run(tool.command(), tool.cwd))
                tool.after()
            except CommandFailed as exc:
                row.errors[tool.name] = str(exc)
    return row


# -- one dataset --------------------------------------------------------------------
class Bench:
    def __init__(self, opts: argparse.Namespace, base: Path) -> None:
        self.opts = opts
        self.base = base
        self.dvc: str | None = None if opts.no_dvc else find_dvc(opts.dvc)
        self.rows: list[Row] = []

    def dataset(self, label: str, spec: Spec, *, with_dvc: bool = True) -> None:
        opts = self.opts
        data = self.base / "data" / label
        started = time.perf_counter()
        total = generate(data, spec)
        count = spec.files + spec.large
        print(
            f"# dataset {label}: {spec.label()} = {count} files, {total / 1e6:.1f} MB "
            f"(ready in {time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        work = self.base / f"work-{label}"
        rmtree(work)
        work.mkdir(parents=True)
        empty_trash()
        rmtree(self.base / f"trash-{label}")  # leftovers of an interrupted run
        TRASH.append(self.base / f"trash-{label}")
        rs_dir = work / "refstore"  # the store; it adds the generated tree by absolute path
        rs_dir.mkdir()
        dvc = self.dvc if with_dvc else None
        dvc_dir = work / "dvc"
        if dvc:
            dvc_dir.mkdir()
            subprocess.run(["cp", "-a", str(data), str(dvc_dir / "data")], check=True)
        repeat = opts.repeat
        name = f"bench{label}"

        def fresh_refstore() -> None:
            rmtree(rs_dir / ".refstore")
            quiet(refstore("init"), rs_dir)

        def fresh_dvc() -> None:
            assert dvc
            for sub in (".dvc", "data.dvc", ".dvcignore"):
                remove(dvc_dir / sub)
            quiet([dvc, "init", "--no-scm", "-q"], dvc_dir)
            quiet([dvc, "config", "core.analytics", "false"], dvc_dir)
            quiet([dvc, "config", "core.site_cache_dir", str(dvc_dir / ".dvc" / "site")], dvc_dir)

        def nothing() -> None:
            pass

        put = lambda: refstore("put", str(data), "-n", name)  # noqa: E731
        # References: cp -a / cp -al of the same tree.
        skip = {item.strip() for item in opts.skip.split(",") if item.strip()}
        print_header()
        cp_row = Row(label, "cp -a (reference)")
        compare(
            cp_row,
            0 if "cp" in skip else repeat,
            [Tool("cp", lambda: rmtree(work / "cp"), lambda: ["cp", "-a", str(data) + "/.", str(work / "cp")], work)],
        )
        cpl_row = Row(label, "cp -al (reference)")
        compare(
            cpl_row,
            0 if "cp" in skip else repeat,
            [Tool("cp", lambda: rmtree(work / "cpl"), lambda: ["cp", "-al", str(data) + "/.", str(work / "cpl")], work)],
        )
        rmtree(work / "cp")
        rmtree(work / "cpl")
        self.rows += [cp_row, cpl_row]
        print_row(cp_row, flush=True)
        print_row(cpl_row, flush=True)
        cp = cp_row.median("cp")
        cpl = cpl_row.median("cp")

        def row(operation: str, baseline: float | None, base_name: str, tools: list[Tool]) -> None:
            result = compare(Row(label, operation, baseline=base_name), repeat, tools)
            if baseline is not None:
                result.times["cp"] = [baseline]
            self.rows.append(result)
            print_row(result, flush=True)

        tools = [Tool("refstore", fresh_refstore, put, rs_dir)]
        if dvc:
            tools.append(Tool("dvc", fresh_dvc, lambda: [dvc, "add", "-q", "data"], dvc_dir))
        row("put / dvc add (first)", cp, "cp -a", tools)
        tools = [Tool("refstore", nothing, put, rs_dir)]
        if dvc:
            tools.append(Tool("dvc", nothing, lambda: [dvc, "status", "-q"], dvc_dir))
        row("re-put / dvc status, nothing changed", None, "", tools)
        if dvc:
            row("dvc add, nothing changed", None, "", [Tool("dvc", nothing, lambda: [dvc, "add", "-q", "data"], dvc_dir)])
        counter = [0]

        def touch(root: Path) -> Callable[[], None]:
            def change() -> None:
                counter[0] += 1
                for path in changed_files(root, 10):
                    os.chmod(path, 0o644)
                    with open(path, "ab") as handle:
                        handle.write(counter[0].to_bytes(8, "little"))

            return change

        originals = [(p, p.stat()) for p in changed_files(data, 10)]
        tools = [Tool("refstore", touch(data), put, rs_dir)]
        if dvc:
            tools.append(Tool("dvc", touch(dvc_dir / "data"), lambda: [dvc, "add", "-q", "data"], dvc_dir))
        try:
            row("re-put / dvc add, 10 files changed", None, "", tools)
        finally:  # put the generated bytes (and times) back, so the dataset stays deterministic
            for path, st in originals:
                os.truncate(path, st.st_size)
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        for mode, baseline, base_name in (("hardlink", cpl, "cp -al"), ("copy", cp, "cp -a")):
            if f"get-{mode}" in skip:
                continue
            out = work / f"get-{mode}"
            tools = [
                Tool(
                    "refstore",
                    lambda o=out: rmtree(o),  # type: ignore[misc]
                    lambda o=out, m=mode: refstore("get", name, "-o", str(o), "--link", m),  # type: ignore[misc]
                    rs_dir,
                )
            ]
            if dvc:
                tools.append(
                    Tool(
                        "dvc",
                        lambda m=mode: (rmtree(dvc_dir / "data"), quiet([dvc, "config", "cache.type", m], dvc_dir)),  # type: ignore[misc]
                        lambda: [dvc, "checkout", "-q"],
                        dvc_dir,
                    )
                )
            row(f"get --link {mode} / dvc checkout ({mode})", baseline, base_name, tools)
            rmtree(out)
        if dvc:
            quiet([dvc, "config", "cache.type", "reflink,copy"], dvc_dir)
        if "push" not in skip:
            self.push_pull(name, data, dvc_dir if dvc else None, work, row)
        empty_trash()
        rmtree(work)

    def push_pull(self, name: str, data: Path, dvc_dir: Path | None, work: Path, row: Callable[..., None]) -> None:
        """Push to / pull from a local-directory remote, when refstore has remotes.

        refstore pushes from a store holding one version of the current tree, as
        DVC pushes the one version its workspace names: the store of the rows
        above also holds the versions the re-put rows made, and a push sends an
        artifact's history (for B, 2 GiB against DVC's 1 GiB).
        """
        import refstore as refstore_pkg

        dvc = self.dvc
        rs_dir = work / "refstore-push"
        rs_dir.mkdir()
        quiet(refstore("init"), rs_dir)
        quiet(refstore("put", str(data), "-n", name), rs_dir)
        rs_remote, dvc_remote = work / "remote-refstore", work / "remote-dvc"
        clone, dvc_clone = work / "clone-refstore", work / "clone-dvc"
        tools: list[Tool] = []
        if hasattr(refstore_pkg.Store, "push"):

            def fresh_remote() -> None:
                rmtree(rs_remote)
                rs_remote.mkdir()
                listing = subprocess.run(
                    refstore("remote", "list"),
                    cwd=rs_dir,
                    capture_output=True,
                    text=True,
                    env=dict(os.environ, PYTHONPATH=str(REPO)),
                )
                if "bench" in listing.stdout:
                    quiet(refstore("remote", "remove", "bench"), rs_dir)
                quiet(refstore("remote", "add", "bench", str(rs_remote)), rs_dir)

            tools.append(Tool("refstore", fresh_remote, lambda: python_api(f"store.push('bench', [{name!r}], jobs=8)"), rs_dir))
        if dvc and dvc_dir is not None:
            tools.append(
                Tool(
                    "dvc",
                    lambda: (
                        rmtree(dvc_remote),
                        dvc_remote.mkdir(),
                        quiet([dvc, "remote", "add", "-f", "-d", "bench", str(dvc_remote)], dvc_dir),
                    ),  # type: ignore[func-returns-value]
                    lambda: [dvc, "push", "-q"],
                    dvc_dir,
                )
            )
        if not tools:
            return
        row("push to a local-directory remote", None, "", tools)
        tools = []
        if hasattr(refstore_pkg.Store, "pull"):

            def fresh_clone() -> None:
                rmtree(clone)
                clone.mkdir()
                quiet(refstore("init"), clone)
                quiet(refstore("remote", "add", "bench", str(rs_remote)), clone)

            tools.append(
                Tool(
                    "refstore",
                    fresh_clone,
                    lambda: python_api(f"store.pull('bench', [{name!r}], objects=True, jobs=8)"),
                    clone,
                )
            )
        if dvc and dvc_dir is not None:

            def fresh_dvc_clone() -> None:
                assert dvc and dvc_dir is not None
                rmtree(dvc_clone)
                dvc_clone.mkdir()
                quiet([dvc, "init", "--no-scm", "-q"], dvc_clone)
                quiet([dvc, "config", "core.site_cache_dir", str(dvc_clone / ".dvc" / "site")], dvc_clone)
                quiet([dvc, "remote", "add", "-d", "bench", str(dvc_remote)], dvc_clone)
                shutil.copy(dvc_dir / "data.dvc", dvc_clone / "data.dvc")

            tools.append(Tool("dvc", fresh_dvc_clone, lambda: [dvc, "pull", "-q"], dvc_clone))
        row("pull into a fresh clone", None, "", tools)

    def startup(self) -> None:
        row = compare(
            Row("-", "refstore --version (start-up)"),
            max(self.opts.repeat, 5),
            [Tool("refstore", lambda: None, lambda: refstore("--version"), self.base)],
        )
        if self.dvc:
            compare(row, max(self.opts.repeat, 5), [Tool("dvc", lambda: None, lambda: [self.dvc or "", "--version"], self.base)])
        self.rows.append(row)
        print_row(row, flush=True)


def changed_files(root: Path, count: int) -> list[Path]:
    """The same ``count`` small files every time (spread over folders)."""
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    picked: list[Path] = []
    for folder in folders[:count]:
        files = sorted(folder.iterdir())
        if files:
            picked.append(files[0])
    if len(picked) < count:
        picked += sorted(p for p in root.iterdir() if p.is_file())[: count - len(picked)]
    return picked[:count]


def find_dvc(path: str | None) -> str | None:
    candidate = path or (DEFAULT_DVC if os.path.exists(DEFAULT_DVC) else shutil.which("dvc"))
    if candidate is None or not os.path.exists(candidate):
        print(
            f"# DVC not found{f' at {path}' if path else ''}; DVC columns are skipped. Install it with:\n#   {INSTALL_DVC}\n"
            "# and pass --dvc /tmp/dvc-venv/bin/dvc",
            flush=True,
        )
        return None
    return candidate


# -- output -------------------------------------------------------------------------
def fmt(values: list[float] | None) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.3f} ({min(values):.2f}-{max(values):.2f})"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


HEADER = (
    f"{'ds':<6}{'operation':<48}{'refstore s med (min-max)':>26}{'DVC s med (min-max)':>26}"
    f"{'rs/DVC':>8}{'rs/cp':>7}{'rs MiB':>8}{'DVC MiB':>8}"
)


def print_header() -> None:
    print(HEADER)


def print_row(row: Row, flush: bool = False) -> None:
    rs, dv = row.median("refstore"), row.median("dvc")
    cp = row.median("cp") if row.baseline else None
    if row.operation.endswith("(reference)"):
        rs_text, rs = fmt(row.times.get("cp")), None
    else:
        rs_text = fmt(row.times.get("refstore"))
    mib = lambda tool: f"{row.rss[tool] / 1024:.0f}" if row.rss.get(tool) else "-"  # noqa: E731
    print(
        f"{row.dataset:<6}{row.operation:<48}{rs_text:>26}{fmt(row.times.get('dvc')):>26}{ratio(rs, dv):>8}"
        f"{ratio(rs, cp):>7}{mib('refstore'):>8}{mib('dvc'):>8}",
        flush=flush,
    )
    for tool, error in row.errors.items():
        print(f"#   {tool} failed: {error}", flush=flush)


def machine() -> str:
    mem = ""
    try:
        with open("/proc/meminfo") as handle:
            mem = f", {int(handle.readline().split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    fs = subprocess.run(["df", "-T", "."], capture_output=True, text=True).stdout.splitlines()[-1:]
    load = os.getloadavg()
    return (
        f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}, "
        f"fs: {' '.join(fs[0].split()[:2]) if fs else '?'}, load avg {load[0]:.1f}/{load[1]:.1f}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="A,B", help="comma-separated: A, B, C (default A,B)")
    parser.add_argument("--a-files", type=int, default=PRESETS["A"].files)
    parser.add_argument("--a-folders", type=int, default=PRESETS["A"].folders)
    parser.add_argument("--b-files", type=int, default=PRESETS["B"].large)
    parser.add_argument("--b-mib", type=int, default=PRESETS["B"].large_mib)
    parser.add_argument("--c-files", type=int, default=PRESETS["C"].files)
    parser.add_argument("--c-folders", type=int, default=PRESETS["C"].folders)
    parser.add_argument("--curve", default="", help="comma-separated file counts, e.g. 5000,20000,80000 (refstore only)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dvc", help=f"path to the dvc executable (default {DEFAULT_DVC} or dvc on PATH)")
    parser.add_argument("--no-dvc", action="store_true", help="refstore and cp only")
    parser.add_argument("--dvc-on-c", action="store_true", help="also run DVC on dataset C (hours on slow disks)")
    parser.add_argument("--workdir", type=Path, help="where data and stores go; generated data is kept and reused there")
    parser.add_argument("--json", type=Path, help="also write every sample as JSON here")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: cp, get-copy, get-hardlink, push")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition, no DVC (CI)")
    opts = parser.parse_args()
    if opts.smoke:
        opts.datasets, opts.a_files, opts.a_folders, opts.b_files, opts.b_mib = "A,B", 60, 6, 1, 2
        opts.repeat, opts.no_dvc, opts.curve = 1, True, ""
    keep = opts.workdir is not None
    base = opts.workdir.resolve() if keep else Path(tempfile.mkdtemp(prefix="refstore-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"# {machine()}")
    print(f"# median of {opts.repeat} runs (min-max); tools alternate; ratios are of medians")
    precompile()
    bench = Bench(opts, base)
    try:
        specs = {
            "A": Spec(files=opts.a_files, folders=opts.a_folders, min_kib=1, max_kib=8),
            "B": Spec(large=opts.b_files, large_mib=opts.b_mib),
            "C": Spec(files=opts.c_files, folders=opts.c_folders, min_kib=1, max_kib=4),
        }
        for label in [d.strip().upper() for d in opts.datasets.split(",") if d.strip()]:
            if label not in specs:
                raise SystemExit(f"unknown dataset {label!r}; use A, B or C")
            bench.dataset(label, specs[label], with_dvc=label != "C" or opts.dvc_on_c)
        for files in [int(n) for n in opts.curve.split(",") if n.strip()]:
            bench.dataset(f"{files // 1000}k", curve_spec(files), with_dvc=False)
        bench.startup()
        if opts.json:
            opts.json.write_text(json.dumps([row.__dict__ for row in bench.rows], indent=1))
    finally:
        if not keep:
            rmtree(base)


if __name__ == "__main__":
    main()
