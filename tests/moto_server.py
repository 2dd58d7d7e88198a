"""moto's S3 server, as ``moto_server`` runs it, with its writes made atomic.

Usage: ``python moto_server.py PORT`` (listens on 127.0.0.1).

moto checks a conditional put (If-Match, If-None-Match) and then stores the object in two
separate steps, and its server answers each request on a thread of its own. Two writers
holding the same ETag can both pass the check before either stores, so on a loaded machine
moto lets a refused put through and a racing writer's rows are lost; S3 itself checks and
stores atomically. The tests of conditional writes are about our retries, not moto's
races, so this server handles one changing request (PUT, POST, DELETE) at a time; reads
still run side by side.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

CHANGING = frozenset({"PUT", "POST", "DELETE"})


def one_write_at_a_time(app: Callable[..., Iterable[bytes]]) -> Callable[..., Any]:
    lock = threading.Lock()

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") not in CHANGING:
            return app(environ, start_response)
        with lock:
            # moto builds each response whole; the list makes sure the store is done
            # before the lock is released.
            return list(app(environ, start_response))

    return serve


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    moto = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", int(sys.argv[1]), one_write_at_a_time(moto), threaded=True)
