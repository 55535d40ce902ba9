"""Bad input for references: one clear line on stderr, a non-zero exit, and the store unchanged."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import Cli, run_refstore
from refharness import Harness, make_harness
from servers import ServerHandle, free_port

import refstore
from refstore.core.fs import describe, storage_options
from refstore.errors import UsageError


def store_is_empty(run_cli: Cli) -> None:
    assert json.loads(run_cli("ls", "--json").stdout) == []
    assert json.loads(run_cli("verify", "--json").stdout)["problems"] == []


def fails(run_cli: Cli, code: int, *args: str) -> str:
    result = run_cli(*args, expect=code)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("refstore: error: "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    return lines[0]


@pytest.fixture
def cli_store(run_cli: Cli, workdir: Path) -> Cli:
    run_cli("init")
    return run_cli


def use(h: Harness, monkeypatch: pytest.MonkeyPatch) -> Harness:
    for key, value in h.env.items():
        monkeypatch.setenv(key, value)
    return h


def test_unknown_scheme_names_the_package_to_install(cli_store: Cli) -> None:
    line = fails(cli_store, 2, "put", "--reference", "nosuchfs://bucket/key", "--name", "ds")
    assert "unknown storage scheme 'nosuchfs'" in line
    store_is_empty(cli_store)


def test_known_scheme_without_its_package_says_what_to_install(cli_store: Cli) -> None:
    pytest.importorskip("fsspec")
    if "pyarrow" in sys.modules or _importable("pyarrow"):
        pytest.skip("pyarrow is installed, hdfs:// would not be missing")
    line = fails(cli_store, 2, "put", "--reference", "hdfs://namenode/data", "--name", "ds")
    assert "needs a package that is not installed" in line and "pyarrow" in line.lower()
    store_is_empty(cli_store)


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_bucket_that_does_not_exist(cli_store: Cli, s3_server: ServerHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    line = fails(cli_store, 5, "put", "--reference", "s3://no-such-bucket-here/data/", "--name", "ds")
    assert "s3://no-such-bucket-here/data/ does not exist" in line
    store_is_empty(cli_store)


@pytest.mark.parametrize("kind", ["s3", "gcs", "azure", "http"])
def test_object_that_does_not_exist(
    cli_store: Cli, kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = use(make_harness(kind, request, tmp_path), monkeypatch)
    h.write("present.txt", b"here\n")
    line = fails(cli_store, 5, "put", "--reference", h.uri("absent.txt"), "--name", "ds")
    assert "absent.txt" in line
    store_is_empty(cli_store)


def test_prefix_over_max_objects_says_how_many_and_how_to_raise(
    cli_store: Cli, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = use(make_harness("s3", request, tmp_path), monkeypatch)
    for i in range(12):
        h.write(f"f{i:02d}", b"x")
    line = fails(cli_store, 2, "put", "--reference", h.uri(), "--name", "ds", "--max-objects", "10")
    assert "holds 12 objects, more than max_objects=10" in line and "--max-objects 12" in line
    store_is_empty(cli_store)
    assert "12 files" in cli_store("put", "--reference", h.uri(), "--name", "ds", "--max-objects", "12").stdout


def test_missing_credentials(cli_store: Cli, s3_server: ServerHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s3_server.make_bucket("creds-test")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never probe the instance-metadata address
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    line = fails(cli_store, 9, "put", "--reference", "s3://creds-test/data/", "--name", "ds")
    assert "no credentials were found" in line
    store_is_empty(cli_store)


def test_server_down_in_a_real_process(workdir: Path) -> None:
    """Nothing listens on the port: one line, exit 9 (backend unreachable), no traceback, store unchanged."""
    run_refstore("init", cwd=workdir)
    port = free_port()
    proc = run_refstore("put", "--reference", f"http://127.0.0.1:{port}/data.csv", "--name", "ds", cwd=workdir, check=False)
    assert proc.returncode == 9, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the server" in lines[0], proc.stderr
    assert json.loads(run_refstore("ls", "--json", cwd=workdir).stdout) == []


def test_s3_server_down(cli_store: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # fewer botocore retries (a storage option from the environment) keep the test short
    monkeypatch.setenv("REFSTORE_STORAGE_OPTIONS_S3", '{"config_kwargs": {"retries": {"max_attempts": 1}}}')
    line = fails(cli_store, 9, "put", "--reference", "s3://bkt/data/", "--name", "ds")
    assert "cannot reach the server" in line
    store_is_empty(cli_store)


def test_download_when_server_went_away_changes_nothing(
    store: refstore.Store, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = use(make_harness("http", request, tmp_path), monkeypatch)
    h.write("a.txt", b"alpha\n")
    art = refstore.Artifact("ds")
    art.add_reference(h.uri("a.txt"))
    version = store.log_artifact(art)
    h.remove("a.txt")
    from refstore.errors import NotFoundError

    with pytest.raises(NotFoundError, match=r"a\.txt"):
        version.download(tmp_path / "out")
    assert not (tmp_path / "out" / "a.txt").exists()
    assert list(store.repo.cache.digests()) == []


def test_credentials_are_refused_in_store_config_and_never_echoed(store: refstore.Store) -> None:
    with pytest.raises(UsageError, match="credential option") as info:
        storage_options("s3", '{"endpoint_url": "http://127.0.0.1:1", "secret": "hunter2"}')
    assert "hunter2" not in str(info.value)
    text = describe(OSError("GET https://acct.blob.core.windows.net/c/b?sv=1&sig=SECRETSIG failed; AccountKey=KEYKEY;"))
    assert "SECRETSIG" not in text and "KEYKEY" not in text


def test_bad_storage_options_in_environment(cli_store: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFSTORE_STORAGE_OPTIONS_S3", "{not json")
    line = fails(cli_store, 2, "put", "--reference", "s3://bkt/key", "--name", "ds")
    assert "REFSTORE_STORAGE_OPTIONS_S3 is not valid JSON" in line
    store_is_empty(cli_store)


@pytest.mark.parametrize(
    "uri",
    [
        "https://bucket.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA&X-Amz-Signature=abc",
        "https://acct.blob.core.windows.net/c/b?sv=2020&sig=abc",
        "https://user:hunter2@example.org/data.csv",
    ],
)
def test_signed_or_password_uris_are_refused_before_anything_is_stored(cli_store: Cli, uri: str) -> None:
    line = fails(cli_store, 2, "put", "--reference", uri, "--name", "ds")
    assert "hunter2" not in line and "abc" not in line.split("refstore: error: ", 1)[1]
    store_is_empty(cli_store)
