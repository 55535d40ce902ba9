"""Secrets: credentials never land in anything the store writes, nor in what refstore prints.

The rule (docs/reliability.md): credentials given to refstore to *reach* data - keys and
tokens in the environment or in storage options, passwords or signatures in URLs of
references and remotes - are never stored (database, WAL, objects, tmp, lock files,
refstore.lock, backups) and never printed (stdout, stderr, logs with --debug). What a user
writes into metadata or descriptions is user data and is stored as given; the positive
control below proves the grep would see a secret if one were there.

Each scenario in :data:`SCENARIOS` runs real processes with a secret and returns their
outputs; the harness then greps every file under the work directory's ``.refstore`` and
``refstore.lock`` plus every output. Remotes (issue 4) plug in as further scenarios.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_tree, run_refstore
from faultkit import find_secret, has_command, store_files

SECRET = "S3cr3t-Zq9xWv7Lm2"  # distinctive: found only if it leaked

Scenario = Callable[[Path, pytest.FixtureRequest], list[str]]


def outputs(*procs: subprocess.CompletedProcess[str]) -> list[str]:
    return [text for proc in procs for text in (proc.stdout, proc.stderr)]


def core_with_env_credentials(work: Path, request: pytest.FixtureRequest) -> list[str]:
    """Cloud credentials in the environment while the core commands run with --debug."""
    env = {"AWS_SECRET_ACCESS_KEY": SECRET, "AZURE_STORAGE_KEY": SECRET, "GOOGLE_OAUTH_ACCESS_TOKEN": SECRET}
    make_tree(work / "data", {"a.txt": "alpha\n"})
    procs = [
        run_refstore("--debug", *args, cwd=work, env=env, check=False)
        for args in (["init"], ["put", "data", "--name", "ds"], ["get", "ds", "-o", "out"], ["verify"], ["gc"], ["ls"])
    ]
    procs.append(run_refstore("put", "nothing-here", "--name", "ds", cwd=work, env=env, check=False))  # an error path
    return outputs(*procs)


def reference_with_env_credentials(work: Path, request: pytest.FixtureRequest) -> list[str]:
    """An S3 reference (moto on 127.0.0.1) reached with a secret key from the environment."""
    server = request.getfixturevalue("s3_server")
    server.make_bucket("secrets-test")
    server.filesystem().pipe("secrets-test/data/a.csv", b"x,y\n1,2\n")
    env = {**server.env, "AWS_ACCESS_KEY_ID": f"AKID{SECRET}", "AWS_SECRET_ACCESS_KEY": SECRET}
    run_refstore("init", cwd=work)
    procs = [
        run_refstore("--debug", *args, cwd=work, env=env, check=False)
        for args in (
            ["put", "--reference", "s3://secrets-test/data/", "--name", "refs"],
            ["get", "refs", "-o", "out"],
            ["verify"],
            ["show", "refs", "--json"],
            ["put", "--reference", "s3://secrets-test/absent/", "--name", "refs2"],  # an error path
        )
    ]
    assert procs[0].returncode == 0, procs[0].stderr
    return outputs(*procs)


def reference_url_with_password(work: Path, request: pytest.FixtureRequest) -> list[str]:
    """Credential-bearing URLs are refused, and the refusal does not echo the secret."""
    run_refstore("init", cwd=work)
    procs = [
        run_refstore("put", "--reference", uri, "--name", "refs", cwd=work, check=False)
        for uri in (
            f"https://user:{SECRET}@127.0.0.1:9/data.csv",
            f"http://127.0.0.1:9/data.csv?X-Amz-Credential=AKID&X-Amz-Signature={SECRET}",
            f"https://127.0.0.1:9/c/blob.bin?sv=2024-01-01&sig={SECRET}",
        )
    ]
    assert all(p.returncode != 0 for p in procs), [p.stderr for p in procs]
    return outputs(*procs)


def remote_url_with_password(work: Path, request: pytest.FixtureRequest) -> list[str]:
    """Remotes (issue 4): credential URLs and options are refused without echoing; push/pull/clone leak nothing."""
    make_tree(work / "data", {"a.txt": "alpha\n"})
    run_refstore("init", cwd=work)
    run_refstore("put", "data", "--name", "ds", cwd=work)
    procs = [
        run_refstore(*args, cwd=work, check=False, timeout=120)
        for args in (
            ["remote", "add", "origin", f"https://user:{SECRET}@127.0.0.1:9/store"],
            ["remote", "add", "signed", f"https://127.0.0.1:9/store?X-Amz-Signature={SECRET}"],
            ["remote", "add", "opts", str(work / "remote"), "-o", f"secret={SECRET}"],
            ["remote", "add", "plain", str(work / "remote")],
            ["push", "plain"],
            ["pull", "plain"],
            ["remote", "list", "--json"],
        )
    ]
    assert [p.returncode for p in procs[:3]] == [2, 2, 2], [p.stderr for p in procs]
    assert procs[4].returncode == 0, procs[4].stderr
    clone = run_refstore("clone", str(work / "remote"), str(work / "cloned"), cwd=work, check=False)
    return [*outputs(*procs, clone), *(p.read_text(errors="replace") for p in (work / "cloned").rglob("*") if p.is_file())]


SCENARIOS: dict[str, tuple[Scenario, str | None]] = {  # name -> (scenario, CLI command it needs)
    "core-env-credentials": (core_with_env_credentials, None),
    "reference-env-credentials": (reference_with_env_credentials, None),
    "reference-url-credentials": (reference_url_with_password, None),
    "remote-url-credentials": (remote_url_with_password, "remote"),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_credentials_are_never_stored_or_printed(name: str, workdir: Path, request: pytest.FixtureRequest) -> None:
    scenario, needs = SCENARIOS[name]
    if needs and not has_command(needs):
        pytest.skip(f"'refstore {needs}' does not exist on this branch yet")
    texts = scenario(workdir, request)
    files = list(store_files(workdir / ".refstore"))
    files += [p for p in (workdir / "refstore.lock", workdir / ".gitignore") if p.exists()]
    assert any(p.name == "refstore.db" for p in files)
    leaks = find_secret(files, texts, SECRET)
    context = [t[max(0, t.find(SECRET) - 160) : t.find(SECRET) + 40] for t in texts if SECRET in t]
    assert leaks == [], context


def test_metadata_is_user_data_and_is_stored_as_given(workdir: Path) -> None:
    """Positive control of the harness: what a user writes into metadata is kept verbatim."""
    make_tree(workdir / "data", {"a.txt": "alpha\n"})
    run_refstore("init", cwd=workdir)
    meta = f'{{"source": "postgres://app:{SECRET}@db.internal/x"}}'
    proc = run_refstore("put", "data", "--name", "ds", "--metadata", meta, "-d", f"token {SECRET}", cwd=workdir)
    assert SECRET in run_refstore("show", "ds", "--json", cwd=workdir).stdout
    hits = find_secret(list(store_files(workdir / ".refstore")), [proc.stdout], SECRET)
    assert any("refstore.db" in hit for hit in hits), hits
