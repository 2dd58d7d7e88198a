"""A fault-injecting HTTP proxy for the store-fault tests (pure Python, one thread per
connection).

It sits between bigarrays and a real server (moto, fake-gcs-server, ``http.server``) and
forwards each request unchanged except for two headers: ``Host`` becomes the upstream's (so
fake-gcs-server's XML-API routing still matches) and ``Connection: close`` (one request per
upstream connection, so a response is simply everything until EOF). Faults are planned per
request: the next ``count`` requests that ``match`` get

- ``"500"`` / ``"503"``: that status, with an empty body, never reaching the server;
- ``"reset"``: the connection is reset (RST) before any answer; the server never sees it;
- ``"reset_after_upstream"``: the request reaches the server (a PUT is stored), then the
  client's connection is reset before it gets the answer;
- ``"truncate"``: the answer is cut off halfway through its body, then the connection is reset;
- ``"stall"``: no answer at all until the proxy stops;
- ``"slow"``: the answer trickles in ``slow_bytes`` bytes every ``slow_interval`` seconds;
- ``"gate"``: held until all ``count`` of them have arrived, then forwarded together (to
  make two clients read the same version of an object).

``count=None`` makes a fault persistent. With ``serialize_writes``, PUT, POST and DELETE
requests reach the server one at a time: a real store checks a conditional put atomically,
moto does not. ``log`` records ``(method, path, fault, range)`` of every
request seen (``range``: its Range header, if any).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

FAULTS = ("500", "503", "reset", "reset_after_upstream", "truncate", "stall", "slow", "gate")


@dataclass
class Plan:
    fault: str
    count: int | None  # None: every matching request
    match: Callable[[str, str], bool]


@dataclass
class Request:
    method: str
    path: str
    fault: str | None
    range: str | None = None


@dataclass
class FaultyProxy:
    upstream: tuple[str, int]
    slow_bytes: int = 64
    slow_interval: float = 0.05
    serialize_writes: bool = False
    log: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._plans: list[Plan] = []
        self._gate: threading.Barrier | None = None
        self._writing = threading.Lock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    # -- configuration ---------------------------------------------------------------------

    def inject(
        self,
        fault: str,
        count: int | None = 1,
        match: Callable[[str, str], bool] | None = None,
    ) -> None:
        """Faults the next ``count`` requests (all, for ``None``) that ``match(method, path)``."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        if fault == "gate":
            if count is None:
                raise ValueError("a gate needs a count")
            self._gate = threading.Barrier(count, timeout=20)
        with self._lock:
            self._plans.append(Plan(fault, count, match or (lambda m, p: True)))

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()

    def faulted(self, fault: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.log if r.fault is not None and fault in (None, r.fault))

    def requests(self, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.log if method in (None, r.method))

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.close()
        self._accept.join(5)
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> FaultyProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- serving ---------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
            t.start()

    def _choose(self, method: str, path: str, byte_range: str | None = None) -> str | None:
        with self._lock:
            fault = None
            for plan in self._plans:
                if plan.count != 0 and plan.match(method, path):
                    fault = plan.fault
                    if plan.count is not None:
                        plan.count -= 1
                    break
            self.log.append(Request(method, path, fault, byte_range))
            return fault

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            with conn:
                head, body = _read_request(conn)
                if head is None:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path = (lines[0].split(" ") + ["", ""])[:2]
                byte_range = next(
                    (
                        line.split(":", 1)[1].strip()
                        for line in lines[1:]
                        if line.lower().startswith("range:")
                    ),
                    None,
                )
                fault = self._choose(method, path, byte_range)
                if fault in ("500", "503"):
                    reason = "Internal Server Error" if fault == "500" else "Service Unavailable"
                    conn.sendall(
                        f"HTTP/1.1 {fault} {reason}\r\nContent-Length: 0\r\n"
                        "Connection: close\r\n\r\n".encode()
                    )
                    return
                if fault == "reset":
                    _reset(conn)
                    return
                if fault == "stall":
                    while not self._stop.wait(0.1):
                        pass
                    return
                if fault == "gate" and self._gate is not None:
                    self._gate.wait()
                if self.serialize_writes and method in ("PUT", "POST", "DELETE"):
                    with self._writing:
                        response = self._forward(lines, body)
                else:
                    response = self._forward(lines, body)
                if fault == "reset_after_upstream":
                    _reset(conn)
                elif fault == "truncate":
                    end = response.find(b"\r\n\r\n") + 4
                    conn.sendall(response[: end + max(1, (len(response) - end) // 2)])
                    _reset(conn)
                elif fault == "slow":
                    for at in range(0, len(response), self.slow_bytes):
                        if self._stop.is_set():
                            return
                        conn.sendall(response[at : at + self.slow_bytes])
                        time.sleep(self.slow_interval)
                else:
                    conn.sendall(response)
        except OSError:
            pass  # the client gave up (a timeout, a reset of its own): nothing to answer

    def _forward(self, lines: list[str], body: bytes) -> bytes:
        host, port = self.upstream
        kept = [
            line
            for line in lines[1:]
            if line and line.split(":", 1)[0].strip().lower() not in ("host", "connection")
        ]
        head = [lines[0], f"Host: {host}:{port}", *kept, "Connection: close", "", ""]
        with socket.create_connection(self.upstream, timeout=30) as up:
            up.sendall("\r\n".join(head).encode("latin-1") + body)
            parts = []
            while chunk := up.recv(1 << 16):
                parts.append(chunk)
        return b"".join(parts)


def _read_request(conn: socket.socket) -> tuple[bytes | None, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(1 << 16)
        if not chunk:
            return None, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        elif name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while not body.endswith(b"0\r\n\r\n"):
            chunk = conn.recv(1 << 16)
            if not chunk:
                break
            body += chunk
    else:
        while len(body) < length:
            chunk = conn.recv(1 << 16)
            if not chunk:
                break
            body += chunk
    return head, body


def _reset(conn: socket.socket) -> None:
    """Closes with RST (SO_LINGER 0) rather than an orderly FIN."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
