"""Progress bars for long jobs (copies, pyramids): tqdm on stderr, silent off a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Advances a bar by (uncompressed bytes, chunks) done.
Advance = Callable[[int, int], None]


@contextmanager
def progress_bar(
    enabled: bool,
    desc: str,
    total_bytes: int | None = None,
    total_chunks: int | None = None,
    unit: str = "chunks",
) -> Iterator[Advance]:
    """Yields a callback that advances the bar by bytes and chunks (or ``unit``, e.g.
    slices) written.

    The bar shows bytes done, MB/s, chunks done and, when the totals are known, the ETA.
    With ``enabled`` False, or when stderr is not a terminal, nothing is printed.
    """
    if not enabled:
        yield lambda nbytes, nchunks: None
        return
    from tqdm import tqdm

    chunks = 0
    of = f"/{total_chunks}" if total_chunks else ""
    # disable=None: tqdm turns itself off when stderr is not a TTY.
    with tqdm(
        total=total_bytes, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=None
    ) as bar:

        def advance(nbytes: int, nchunks: int) -> None:
            nonlocal chunks
            chunks += nchunks
            bar.set_postfix_str(f"{chunks}{of} {unit}", refresh=False)
            bar.update(nbytes)

        yield advance
