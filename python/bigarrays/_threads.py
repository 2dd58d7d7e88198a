"""How many threads bigarrays uses: ``set_num_threads`` and ``get_num_threads``."""

from __future__ import annotations

import operator

from . import _core
from .errors import InvalidArgumentError


def set_num_threads(n: int | None) -> None:
    """Sets how many threads bigarrays uses in this process.

    The decoding pool gets ``n`` threads and the IO runtime ``min(n, 8)``; reads keep up to
    ``concurrency`` requests in flight whatever ``n`` is (waiting on the network takes no
    thread). Reads already running finish on the threads they started with; the next read
    uses the new count.

    Parameters
    ----------
    n : int or None
        Threads, at least 1; ``None`` goes back to the default: ``BIGARRAYS_NUM_THREADS``
        if set, else the machine's cores, or inside a torch ``DataLoader`` worker the
        cores divided by the number of workers (at least 1).

    Notes
    -----
    The setting belongs to the calling process: DataLoader workers and other child
    processes make their own choice. Call it in ``worker_init_fn`` to size each worker, or
    set ``BIGARRAYS_NUM_THREADS`` before starting them (children inherit the environment).
    """
    if n is not None:
        try:
            n = operator.index(n)
        except TypeError:
            raise InvalidArgumentError(
                f"set_num_threads takes an int or None, not {type(n).__name__}"
            ) from None
        if n < 1:
            raise InvalidArgumentError(f"set_num_threads needs at least 1 thread, got {n}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads bigarrays uses in this process (the decoding pool's size).

    Returns
    -------
    int
        As :func:`set_num_threads` chose it, else the default it describes.

    Raises
    ------
    InvalidArgumentError
        If ``BIGARRAYS_NUM_THREADS`` is set to something other than a positive integer.
    """
    return _core.get_num_threads()
