"""How much memory this process may still take: the system's available memory,
the cgroup limit less its usage, and ``RLIMIT_AS``, whichever is least
(:func:`available_memory`); readers check a map's announced size against it
before allocating."""

from __future__ import annotations

import resource
from pathlib import Path


def readable_size(n: float) -> str:
    """``n`` bytes, readable: ``"6.4 GiB"``, ``"820 MiB"``, ``"12 KiB"``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} bytes"


def _read_int(path: Path) -> int | None:
    """The integer in a /proc or /sys file (``None`` when missing or ``max``)."""
    try:
        text = path.read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None


def _stat_field(path: Path, key: str) -> int:
    """A ``key value`` line of a cgroup ``memory.stat`` file (0 when missing)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _proc_kib(path: Path, key: str) -> int | None:
    """A ``Key: N kB`` line of /proc/meminfo or /proc/self/status, in bytes."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


#: Per cgroup version: (folder under the mount, limit file, usage file, the
#: ``memory.stat`` key of the reclaimable file cache).
_CGROUP_FILES = {
    "v2": ("", "memory.max", "memory.current", "inactive_file"),
    "v1": (
        "memory",
        "memory.limit_in_bytes",
        "memory.usage_in_bytes",
        "total_inactive_file",
    ),
}


def _cgroup_room(cgroup_file: Path, root: Path) -> int | None:
    """Bytes left under this process's cgroup memory limits (v2 or v1), the
    tightest over its cgroup and the cgroups above it; ``None`` without a limit.

    Usage includes the page cache, which the kernel reclaims before it kills
    anything, so the inactive file cache is not counted as used.
    """
    try:
        lines = cgroup_file.read_text().splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        if controllers == "":
            version = "v2"
        elif "memory" in controllers.split(","):
            version = "v1"
        else:
            continue
        sub, limit_file, usage_file, cache_key = _CGROUP_FILES[version]
        base = root / sub if sub else root
        folder = base / rel.lstrip("/")
        if not folder.is_dir():  # a container sees its own cgroup as the root
            folder = base
        while True:
            limit = _read_int(folder / limit_file)
            usage = _read_int(folder / usage_file)
            if limit is not None and usage is not None and limit < 2**60:
                used = usage - _stat_field(folder / "memory.stat", cache_key)
                rooms.append(limit - max(used, 0))
            if folder == base:
                break
            folder = folder.parent
    return min(rooms) if rooms else None


def available_memory() -> int | None:
    """Bytes this process can still allocate, as far as the system says.

    The least of: the kernel's estimate of available memory (``MemAvailable`` in
    /proc/meminfo); the room left under the cgroup's memory limit (a container's
    or a service's, v2 or v1); the room left under this process's address-space
    and data limits (``RLIMIT_AS``, ``RLIMIT_DATA``). Written here rather than
    taken from psutil, which is not a dependency and reports ``MemAvailable``
    only: a container or a capped process would be told about memory it cannot
    get.

    Returns:
        Bytes, or ``None`` when nothing is known (not Linux).
    """
    proc = Path("/proc")
    rooms = [_proc_kib(proc / "meminfo", "MemAvailable")]
    rooms.append(_cgroup_room(proc / "self" / "cgroup", Path("/sys/fs/cgroup")))
    for limit, used in (
        (resource.RLIMIT_AS, "VmSize"),
        (resource.RLIMIT_DATA, "VmData"),
    ):
        soft = resource.getrlimit(limit)[0]
        in_use = _proc_kib(proc / "self" / "status", used)
        if soft != resource.RLIM_INFINITY and in_use is not None:
            rooms.append(soft - in_use)
    known = [max(room, 0) for room in rooms if room is not None]
    return min(known) if known else None
