"""Awaiting engine calls from asyncio.

The event loop's thread only queues a call (``_core.Layer.submit_*``) and returns to the loop;
engine threads run it with the GIL released and hand the outcome back through
``loop.call_soon_threadsafe`` (see ``src/python/async_calls.rs``). Each call carries a
``CancelToken``, cancelled when the awaiting task is.
"""

from __future__ import annotations

import asyncio
import atexit
import time
import weakref
from collections.abc import Callable
from typing import Any

from . import _core

#: ``submit(token, done)``: queues one engine call whose outcome goes to ``done``.
Submit = Callable[[_core.CancelToken, Callable[[Any, BaseException | None], object]], None]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


#: The tokens of the calls handed to the engine and not yet settled.
_live: set[_core.CancelToken] = set()
#: When the engine last settled a call (``time.monotonic``).
_last_settled = 0.0
_exit_hook: list[bool] = []


def _stop_at_exit_once() -> None:
    if not _exit_hook:
        _exit_hook.append(True)
        atexit.register(_stop_at_exit)


def _stop_at_exit() -> None:
    """At interpreter exit, cancels the calls still running (an ``asyncio.run`` that ended
    leaves cancelled reads to stop on their own) and waits, up to 10 s, until the engine's
    threads are done with Python: one that takes the GIL once the interpreter is finalizing
    aborts the process. A cancelled write's chunks are each old or new, as after a kill."""
    for token in list(_live):
        token.cancel()
    deadline = time.monotonic() + 10
    while _live and time.monotonic() < deadline:
        time.sleep(0.01)
    # The last callback has returned; its thread lets go of the GIL right after.
    rest = _last_settled + 0.1 - time.monotonic()
    if rest > 0:
        time.sleep(rest)


#: Each event loop's calls not yet handed to the engine (see ``_defer``).
_pending: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Callable[[], None]]] = (
    weakref.WeakKeyDictionary()
)


def _defer(loop: asyncio.AbstractEventLoop, start: Callable[[], None]) -> None:
    """Hands ``start`` to the engine at the loop's next turn, with every other call made
    before it: the tasks ``asyncio.gather`` starts all make their calls in one turn, and
    queued together they become one engine read (shared chunks fetched once)."""
    pending = _pending.get(loop)
    if pending is None:
        pending = _pending[loop] = []
        loop.call_soon(_flush, loop)
    pending.append(start)


def _flush(loop: asyncio.AbstractEventLoop) -> None:
    for start in _pending.pop(loop, []):
        start()


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Marks an outcome nobody awaits any more as seen (asyncio would log it otherwise)."""
    if not future.cancelled():
        future.exception()


async def call(submit: Submit, *, wait_when_cancelled: bool) -> Any:
    """Runs one engine call without blocking the loop; its result, or its error raised.

    When the awaiting task is cancelled, the call's token is cancelled, which stops the
    engine within about 50 ms (between chunks). With ``wait_when_cancelled`` (writes) the
    cancellation is raised only once the engine has stopped, so that no chunk of the write
    is still being put when the caller regains control; reads raise at once and free their
    buffers when the engine stops.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    token = _core.CancelToken()

    def done(result: Any, error: BaseException | None) -> None:
        global _last_settled
        _live.discard(token)
        _last_settled = time.monotonic()
        try:
            loop.call_soon_threadsafe(_settle, future, result, error)
        except RuntimeError:
            pass  # the loop is closed: nobody is left to take the outcome

    def start() -> None:
        _stop_at_exit_once()
        _live.add(token)
        try:
            submit(token, done)
        except BaseException as e:  # noqa: BLE001 - the awaiting task raises it
            _live.discard(token)
            _settle(future, None, e)

    _defer(loop, start)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        token.cancel()
        future.add_done_callback(_retrieve)
        if wait_when_cancelled:
            while not future.done():
                try:
                    await asyncio.wait([future])
                except asyncio.CancelledError:
                    continue  # cancelled again: the first cancellation is raised below
        raise
