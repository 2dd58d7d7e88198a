"""How much memory this process may use: the request-size guard refuses boxes larger.

Inside a container or a batch job the limit is the cgroup's, often far below the
machine's physical memory; a request between the two would be killed by the kernel's OOM
killer instead of raising :class:`~bigarrays.errors.RequestTooLargeError`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

#: Where the kernel mounts the cgroup hierarchy, and where it says which cgroup we are in.
CGROUP_ROOT = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"


@functools.cache
def memory_bytes() -> int:
    """The memory available to this process: physical memory, or the cgroup's limit when
    lower. Asked once: it is on the path of every read, including one-voxel ones."""
    try:
        physical = int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not POSIX: only the address space limits
        physical = 2**63 - 1
    limit = cgroup_limit()
    return physical if limit is None else min(physical, limit)


def cgroup_limit(root: str = CGROUP_ROOT, proc_cgroup: str = PROC_CGROUP) -> int | None:
    """The tightest memory limit of this process's cgroup and its ancestors, or None.

    cgroup v2 keeps it in ``memory.max`` (``max`` when unlimited), v1 in the memory
    controller's ``memory.limit_in_bytes``. The path in ``/proc/self/cgroup`` may not exist
    in the mounted tree (a container sees its own cgroup as the root), so every ancestor
    that does exist is read, up to the root.
    """
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:  # not Linux, or no /proc
        return None
    limits = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2: one unified hierarchy
            base, name = Path(root), "memory.max"
        elif "memory" in controllers.split(","):  # v1: the memory controller's hierarchy
            base, name = Path(root) / "memory", "memory.limit_in_bytes"
        else:
            continue
        directory = base / path.lstrip("/")
        while True:
            value = _read_limit(directory / name)
            if value is not None:
                limits.append(value)
            if directory == base or base not in directory.parents:
                break
            directory = directory.parent
    return min(limits) if limits else None


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit here
