"""``refstore verify --repair``: corrupt or missing cache objects refetched, verified, from a remote or a reference.

The scenario of every test: a store pushed to a remote, then one cached object
flipped by a byte and another deleted. ``verify`` names both (exit 6);
``verify --repair`` removes the corrupt one before fetching, refetches both
(re-hashed on arrival), and a second ``verify`` is clean. Without a source, the
line says what to do and nothing wrong stays under the digest.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from conftest import make_tree, run_refstore
from faultkit import assert_clean_failure, flip_byte

import refstore
from refstore.core import hashing

FILES = {
    "small.bin": random.Random(1).randbytes(3000),
    "other.bin": random.Random(2).randbytes(5000),
    "big.bin": random.Random(3).randbytes(400_000),  # above transfer.SMALL: streamed, not batched
}


def _digest(data: bytes) -> str:
    return hashing.hash_bytes(data, "xxh3-128")


def _object(work: Path, data: bytes) -> Path:
    digest = _digest(data)
    return work / ".refstore" / "objects" / digest[:2] / digest[2:]


def _store_with_remote(tmp_path: Path, url: str | None, env: dict[str, str]) -> Path:
    """My store holds ``ds``; a teammate's store with the same files pushed them to ``url``.

    My store never pushed or pulled, so it does not count on the remote for any
    object: a missing one is a verify problem (an object a remote is *known* to
    hold may be absent by design - a lazily pulled clone - see the last test).
    """
    work = tmp_path / "work"
    make_tree(work / "data", FILES)
    run_refstore("init", cwd=work, env=env)
    run_refstore("put", "data", "--name", "ds", cwd=work, env=env)
    if url is not None:
        team = tmp_path / "team"
        make_tree(team / "data", FILES)
        run_refstore("init", cwd=team, env=env)
        run_refstore("put", "data", "--name", "ds", cwd=team, env=env)
        run_refstore("remote", "add", "origin", url, cwd=team, env=env)
        run_refstore("push", cwd=team, env=env)
        run_refstore("remote", "add", "origin", url, cwd=work, env=env)
    return work


def _break(work: Path) -> tuple[str, str]:
    """Flip a byte of one object, delete another; return (corrupt, missing) digests."""
    flip_byte(_object(work, FILES["small.bin"]), 1500)
    path = _object(work, FILES["big.bin"])
    os.chmod(path, 0o644)
    path.unlink()
    return _digest(FILES["small.bin"]), _digest(FILES["big.bin"])


def _remote(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, dict[str, str]]:
    if backend == "s3":
        server = request.getfixturevalue("s3_server")
        bucket = f"repair{random.Random(str(tmp_path)).randrange(10**6)}"
        server.make_bucket(bucket)
        return f"s3://{bucket}/store", dict(server.env)
    return str(tmp_path / "remote"), {}


@pytest.mark.parametrize("backend", ["directory", "s3"])
def test_repair_refetches_corrupt_and_missing_objects(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url, env = _remote(backend, tmp_path, request)
    work = _store_with_remote(tmp_path, url, env)
    corrupt, missing = _break(work)

    found = run_refstore("verify", cwd=work, env=env, check=False)
    line = assert_clean_failure(found, {6})
    assert f"object {corrupt}: corrupt" in found.stdout and f"object {missing}: missing" in found.stdout
    assert "verify --repair" in line

    fixed = run_refstore("verify", "--repair", cwd=work, env=env, check=False)
    assert fixed.returncode == 0, fixed.stderr
    assert f"removed corrupt object {corrupt}" in fixed.stdout
    for digest in (corrupt, missing):
        assert f"repaired object {digest} from remote origin ({url})" in fixed.stdout
    assert "repaired 2 object(s), 0 manifest record(s)" in fixed.stdout

    assert "ok:" in run_refstore("verify", cwd=work, env=env).stdout
    run_refstore("get", "ds", "-o", str(tmp_path / "out"), cwd=work, env=env)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == FILES


def test_repair_without_a_remote_says_what_to_do(tmp_path: Path) -> None:
    work = _store_with_remote(tmp_path, None, {})
    corrupt, missing = _break(work)
    proc = run_refstore("verify", "--repair", cwd=work, check=False)
    line = assert_clean_failure(proc, {6})
    assert proc.stderr.strip() == line  # the details are on stdout; stderr has the one line
    assert "2 object(s) or record(s) could not be refetched" in line
    for digest, state in ((corrupt, "corrupt and removed"), (missing, "missing")):
        expected = f"object {digest}: {state}, not repaired: no remote configured; add one that has it with 'refstore remote add"
        assert expected in proc.stdout
    assert not _object(work, FILES["small.bin"]).exists()  # the wrong bytes are gone from under the digest
    again = run_refstore("verify", cwd=work, check=False)
    assert_clean_failure(again, {6})
    assert f"object {corrupt}: missing" in again.stdout and f"object {missing}: missing" in again.stdout
    # a re-put heals it (the documented alternative)
    run_refstore("put", "data", "--name", "ds", cwd=work)
    assert "ok:" in run_refstore("verify", cwd=work).stdout


def test_repair_refuses_a_corrupt_copy_on_the_remote_and_uses_the_next_remote(tmp_path: Path) -> None:
    work = _store_with_remote(tmp_path, str(tmp_path / "remote"), {})
    backup = tmp_path / "backup"
    run_refstore("remote", "add", "backup", str(backup), cwd=tmp_path / "team")
    run_refstore("push", "backup", cwd=tmp_path / "team")
    corrupt, missing = _break(work)
    digest = _digest(FILES["small.bin"])
    flip_byte(tmp_path / "remote" / "objects" / digest[:2] / digest[2:], 10)  # origin's copy is bad too

    # Only origin: the bad copy is refused, named, and not stored.
    proc = run_refstore("verify", "--repair", "--json", cwd=work, check=False)
    assert proc.returncode == 6, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["repair"]["repaired"]) == {missing}
    reason = report["repair"]["unrepaired"][corrupt]
    assert f"remote origin ({tmp_path / 'remote'})" in reason and "corrupt" in reason
    assert report["repair"]["sources"] == [f"remote origin ({tmp_path / 'remote'})"]
    assert not _object(work, FILES["small.bin"]).exists()

    # With backup added again, origin is tried first, then backup provides it.
    run_refstore("remote", "add", "backup", str(backup), cwd=work)
    proc = run_refstore("verify", "--repair", cwd=work)
    assert f"repaired object {corrupt} from remote backup ({backup})" in proc.stdout
    assert "ok:" in run_refstore("verify", cwd=work).stdout


def test_repair_api_and_reference_bytes(tmp_path: Path) -> None:
    """Store.verify(repair=True); cached reference bytes come back from the unchanged source, not a changed one."""
    share = make_tree(tmp_path / "share", {"ref.bin": random.Random(4).randbytes(2048)})
    work = tmp_path / "work"
    with refstore.init(work) as store:
        art = refstore.Artifact("refs", type="dataset")
        art.add_reference(f"file://{share}")
        store.log_artifact(art)
        store.artifact("refs").download(tmp_path / "out")  # caches the reference's bytes
        digest = _digest((share / "ref.bin").read_bytes())
        flip_byte(store.repo.cache.path(digest), 7)
        assert any(digest in p for p in store.verify().problems)

        report = store.verify(repair=True)
        assert report.ok, report.problems
        assert report.repair is not None and report.repair.removed == [digest]
        assert report.repair.repaired == {digest: f"reference file://{share}/ref.bin"}
        assert store.verify().ok

        flip_byte(store.repo.cache.path(digest), 7)
        (share / "ref.bin").write_bytes(b"changed since it was recorded")
        report = store.verify(repair=True)
        assert not report.ok and digest in report.repair.unrepaired  # type: ignore[union-attr]
        assert not store.repo.cache.has(digest)


def test_repair_with_spec_is_a_usage_error(tmp_path: Path) -> None:
    work = _store_with_remote(tmp_path, None, {})
    assert_clean_failure(run_refstore("verify", "ds", "--repair", cwd=work, check=False), {2})


def test_object_a_remote_is_known_to_hold_may_be_absent(tmp_path: Path) -> None:
    """After a push, a deleted object is fetched on demand (not a verify problem); a corrupt one still is."""
    work = tmp_path / "work"
    make_tree(work / "data", FILES)
    run_refstore("init", cwd=work)
    run_refstore("put", "data", "--name", "ds", cwd=work)
    run_refstore("remote", "add", "origin", str(tmp_path / "remote"), cwd=work)
    run_refstore("push", cwd=work)
    corrupt, missing = _break(work)
    found = run_refstore("verify", cwd=work, check=False)
    assert_clean_failure(found, {6})
    assert corrupt in found.stdout and missing not in found.stdout
    fixed = run_refstore("verify", "--repair", cwd=work)
    assert f"repaired object {corrupt} from remote origin" in fixed.stdout and missing not in fixed.stdout
    run_refstore("get", "ds", "-o", str(tmp_path / "out"), cwd=work)  # the absent one comes on demand
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == FILES


def test_repair_from_a_failing_remote_names_it(tmp_path: Path) -> None:
    """A remote that fails (here: its path is a file) is named with its error; exit 6, nothing stored."""
    work = _store_with_remote(tmp_path, None, {})
    (tmp_path / "not-a-dir").write_text("x")
    run_refstore("remote", "add", "broken", str(tmp_path / "not-a-dir"), cwd=work)
    corrupt, missing = _break(work)
    proc = run_refstore("verify", "--repair", cwd=work, check=False)
    assert_clean_failure(proc, {6})
    for digest in (corrupt, missing):
        line = next(x for x in proc.stdout.splitlines() if x.startswith(f"object {digest}: ") and "not repaired" in x)
        assert f"remote broken ({tmp_path / 'not-a-dir'}): remote" in line and "failed while" in line, line
    assert not _object(work, FILES["small.bin"]).exists()


def _flip_record(work: Path, digest: str) -> None:
    import sqlite3

    db = sqlite3.connect(work / ".refstore" / "refstore.db")
    try:
        body = bytearray(db.execute("SELECT body FROM trees WHERE digest = ?", (digest,)).fetchone()[0])
        body[len(body) // 2] ^= 0x01
        with db:
            db.execute("UPDATE trees SET body = ? WHERE digest = ?", (bytes(body), digest))
    finally:
        db.close()


def test_repair_replaces_a_corrupt_manifest_record_from_a_remote(tmp_path: Path) -> None:
    nested = {"top.txt": b"top\n", "sub/deep.bin": FILES["small.bin"]}
    work = tmp_path / "work"
    make_tree(work / "data", nested)
    run_refstore("init", cwd=work)
    run_refstore("put", "data", "--name", "ds", cwd=work)
    with refstore.open(work) as store:
        root = store.artifact("ds").record.digest
        sub = next(n.digest for n in store.repo.record(root) if n.name == "sub")
    assert sub is not None
    _flip_record(work, sub)
    alone = run_refstore("verify", "--repair", cwd=work, check=False)
    assert_clean_failure(alone, {6})
    assert f"manifest record {sub}: not repaired: no remote configured" in alone.stdout

    # a backup that has it (pushed from a copy of the store made before the damage would do the same)
    team = tmp_path / "team"
    make_tree(team / "data", nested)
    run_refstore("init", cwd=team)
    run_refstore("put", "data", "--name", "ds", cwd=team)
    run_refstore("remote", "add", "origin", str(tmp_path / "remote"), cwd=team)
    run_refstore("push", cwd=team)
    run_refstore("remote", "add", "origin", str(tmp_path / "remote"), cwd=work)
    # the object beneath the damaged record is gone too: found only once the record is back
    path = _object(work, FILES["small.bin"])
    os.chmod(path, 0o644)
    path.unlink()
    found = run_refstore("verify", cwd=work, check=False)
    assert_clean_failure(found, {6})
    assert f"manifest record {sub}" in found.stdout
    fixed = run_refstore("verify", "--repair", cwd=work)
    assert f"repaired manifest record {sub} from remote origin" in fixed.stdout
    assert f"repaired object {_digest(FILES['small.bin'])} from remote origin" in fixed.stdout
    assert "ok:" in run_refstore("verify", cwd=work).stdout
    run_refstore("get", "ds", "-o", str(tmp_path / "out"), cwd=work)
    assert (tmp_path / "out" / "sub" / "deep.bin").read_bytes() == FILES["small.bin"]
