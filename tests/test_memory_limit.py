"""The request-size guard's limit: physical memory, or the cgroup's limit when lower."""

from __future__ import annotations

import os

import pytest

from bigarrays._memory import cgroup_limit, memory_bytes


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_takes_the_tightest_limit_of_the_cgroup_and_its_ancestors(tmp_path):
    root = tmp_path / "cgroup"
    write(tmp_path / "proc", "0::/system.slice/job.scope\n")
    write(root / "memory.max", "max\n")
    write(root / "system.slice" / "memory.max", f"{8 << 30}\n")
    write(root / "system.slice" / "job.scope" / "memory.max", f"{2 << 30}\n")
    assert cgroup_limit(str(root), str(tmp_path / "proc")) == 2 << 30
    write(root / "system.slice" / "job.scope" / "memory.max", "max\n")
    assert cgroup_limit(str(root), str(tmp_path / "proc")) == 8 << 30


def test_a_container_sees_its_own_cgroup_as_the_root(tmp_path):
    # /proc/self/cgroup names a path the container's mount does not have: the root counts.
    root = tmp_path / "cgroup"
    write(tmp_path / "proc", "0::/kubepods/pod1/abc\n")
    write(root / "memory.max", f"{512 << 20}\n")
    assert cgroup_limit(str(root), str(tmp_path / "proc")) == 512 << 20


def test_v1_memory_controller(tmp_path):
    root = tmp_path / "cgroup"
    write(tmp_path / "proc", "12:cpu,cpuacct:/docker/x\n4:memory:/docker/x\n")
    write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")  # unlimited
    write(root / "memory" / "docker" / "x" / "memory.limit_in_bytes", f"{3 << 30}\n")
    assert cgroup_limit(str(root), str(tmp_path / "proc")) == 3 << 30


def test_no_cgroup_information_is_no_limit(tmp_path):
    assert cgroup_limit(str(tmp_path), str(tmp_path / "absent")) is None
    write(tmp_path / "proc", "0::/\n")
    assert cgroup_limit(str(tmp_path / "cgroup"), str(tmp_path / "proc")) is None


def test_the_guard_never_allows_more_than_physical_memory():
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < memory_bytes() <= physical
    limit = cgroup_limit()
    if limit is not None and limit < physical:
        assert memory_bytes() == limit


@pytest.mark.skipif(not os.path.exists("/proc/self/cgroup"), reason="Linux only")
def test_this_process_cgroup_is_read_without_error():
    limit = cgroup_limit()
    assert limit is None or limit > 0
