"""A delay proxy for bench_latency.py: every request waits ``delay`` seconds before it goes on
to the server, as if the server were that far away, and many wait at once.

It runs in its own process (``python delay_proxy.py UPSTREAM_PORT DELAY_MS [replay]``, printing its
port on the first line of stdout), so that its work never takes the GIL from the readers
being timed. asyncio keeps any number of requests in flight on one thread. Clients keep
their connections (HTTP/1.1 keep-alive), as they would with a real store; towards the server
each request gets a connection of its own (``Connection: close``), so an answer is simply
everything until EOF (the idea of ``tests/faulty_proxy.py``).

With ``replay`` on (the bench's default), a GET or HEAD the proxy has answered before is
answered again from memory, byte for byte, after the same delay, without asking the server:
the bench's layers do not change once uploaded, so the answer would be the same, and moto
(one Python process, about 100 requests a second on 2 cores) would otherwise cap every
reader at its own speed, which real buckets (thousands of requests a second per prefix) do
not. The requests that fill it are the checking passes before any timing.

``GET /__proxy__/log`` answers the requests seen so far as JSON (method, path, Range header,
arrival and answer times in seconds of ``time.monotonic``), and ``POST /__proxy__/clear``
empties that log: the bench counts each reader's requests by kind with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


class DelayProxy:
    def __init__(self, upstream_port: int, delay: float, replay: bool) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.delay = delay
        self.log: list[dict] = []
        # (request line, Range, If-Match, If-None-Match) -> the server's answer
        self.answers: dict[tuple, bytes] | None = {} if replay else None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self.one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away
        finally:
            writer.close()

    async def one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serves one request of a connection; whether the connection stays open."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, path = (lines[0].split(" ") + ["", ""])[:2]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if value:
                headers[name.strip().lower()] = value.strip()
        # Readers send GETs and HEADs; the bench uploads straight to the server.
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length else b""
        if path.startswith("/__proxy__/"):
            answer = json.dumps(self.log).encode() if path == "/__proxy__/log" else b"{}"
            if path == "/__proxy__/clear":
                self.log = []
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(answer)}\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
            return True
        arrived = time.monotonic()
        await asyncio.sleep(self.delay)
        key = tuple(headers.get(h) for h in ("range", "if-match", "if-none-match"))
        key = (lines[0], *key)
        if self.answers is not None and method in ("GET", "HEAD") and key in self.answers:
            response = self.answers[key]
        else:
            response = keep_alive(await self.forward(lines, body), method)
            if self.answers is not None and method in ("GET", "HEAD"):
                self.answers[key] = response
        writer.write(response)
        await writer.drain()
        self.log.append(
            {
                "method": method,
                "path": path,
                "range": headers.get("range"),
                "arrived": arrived,
                "answered": time.monotonic(),
            }
        )
        return headers.get("connection", "").lower() != "close"

    async def forward(self, lines: list[str], body: bytes) -> bytes:
        host, port = self.upstream
        kept = [
            line
            for line in lines[1:]
            if line and line.split(":", 1)[0].strip().lower() not in ("host", "connection")
        ]
        head = [lines[0], f"Host: {host}:{port}", *kept, "Connection: close", "", ""]
        up_reader, up_writer = await asyncio.open_connection(host, port)
        try:
            up_writer.write("\r\n".join(head).encode("latin-1") + body)
            await up_writer.drain()
            return await up_reader.read()
        finally:
            up_writer.close()


def keep_alive(response: bytes, method: str) -> bytes:
    """The server's answer with its ``Connection: close`` dropped, and a Content-Length
    where it had none (its end was the connection's), so the client's connection stays
    open."""
    head, _, body = response.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    names = {line.split(b":", 1)[0].strip().lower() for line in lines[1:]}
    if b"content-length" not in names and b"transfer-encoding" not in names:
        if method != "HEAD":
            lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def serve(upstream_port: int, delay: float, replay: bool) -> None:
    proxy = DelayProxy(upstream_port, delay, replay)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def delay_proxy(endpoint: str, delay: float, replay: bool = False) -> Iterator[str]:
    """A delay proxy in front of the server at ``endpoint`` (``http://127.0.0.1:PORT``), in
    a subprocess, replaying answers it has given before if ``replay``; yields its own
    endpoint and always stops it."""
    port = endpoint.rsplit(":", 1)[1]
    args = [sys.executable, str(Path(__file__).resolve()), port, str(delay * 1000)]
    args += ["replay"] if replay else []
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise SystemExit(f"the delay proxy did not start (it said {line!r})")
        yield f"http://127.0.0.1:{line}"
    finally:
        # Imported here: the proxy process itself runs this file and needs none of common's
        # imports.
        from common import stop

        stop(proc)


def proxy_log(endpoint: str) -> list[dict]:
    """The requests the proxy at ``endpoint`` has seen since it was last cleared."""
    with urllib.request.urlopen(f"{endpoint}/__proxy__/log", timeout=10) as r:
        return json.loads(r.read())


def clear_log(endpoint: str) -> None:
    request = urllib.request.Request(f"{endpoint}/__proxy__/clear", data=b"", method="POST")
    urllib.request.urlopen(request, timeout=10).close()


def rounds(log: list[dict]) -> int:
    """The longest chain of requests each sent only after the one before was answered: the
    round trips a read waited for one after another (each request's round is one more than
    the latest round answered before it arrived)."""
    done: list[tuple[float, int]] = []  # (answered, round), of requests arrived earlier
    deepest = 0
    for r in sorted(log, key=lambda r: r["arrived"]):
        before = [k for answered, k in done if answered <= r["arrived"]]
        k = 1 + max(before, default=0)
        done.append((r["answered"], k))
        deepest = max(deepest, k)
    return deepest


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), float(sys.argv[2]) / 1000, sys.argv[3:] == ["replay"]))
