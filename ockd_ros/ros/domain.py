"""A private DDS domain for each test run, demo and benchmark on this machine.

Processes on different ROS_DOMAIN_IDs never see each other's topics, so runs side by side cannot
cross-talk. A domain is claimed with an exclusive lock on /tmp/ockd_ros_domain_<id>.lock, held
until the process exits; the kernel releases it even after a crash, so no stale claim remains.
Each use has its own range of ids inside 1–101: on Linux, larger ids put DDS ports into the
ephemeral port range, and 0 (the default) belongs to real robots.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

DOMAIN_RANGES = {
    "test": range(1, 61),
    "demo": range(61, 81),
    "bench": range(81, 102),
}
LOCK_DIR = Path("/tmp")

_held_locks: list[IO] = []  # closing a lock file would release its domain


def private_domain(use: str) -> int:
    """ROS_DOMAIN_ID if it is set (by the user, or by a parent process that holds it for its
    children), else a domain of `use`'s range that no other live process holds."""
    if "ROS_DOMAIN_ID" in os.environ:
        return int(os.environ["ROS_DOMAIN_ID"])
    return claim_domain(use)


def claim_domain(use: str) -> int:
    """The first domain of `use`'s range whose lock is free, held until this process exits."""
    if use not in DOMAIN_RANGES:
        raise ValueError(f"no domain range for {use!r}; ranges: {DOMAIN_RANGES}")
    domains = DOMAIN_RANGES[use]
    for domain in domains:
        lock = _try_lock(LOCK_DIR / f"ockd_ros_domain_{domain}.lock")
        if lock is not None:
            _held_locks.append(lock)
            return domain
    raise RuntimeError(
        f"all ROS domains for {use} ({domains.start}–{domains.stop - 1}) are taken by running "
        f"processes (locks {LOCK_DIR}/ockd_ros_domain_<id>.lock); wait for one to finish or "
        "set ROS_DOMAIN_ID"
    )


def _try_lock(path: Path) -> IO | None:
    try:
        lock = path.open("a")
    except OSError:  # another user's lock file: that domain may be in use
        return None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock
