"""Atomic, durable file replacement: a reader sees the old file or the new one,
never half, and once the call returns the new one survives a crash."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Read once at import: changing the umask later would race with other threads.
_UMASK = _read_umask()


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, fsync it, rename it over ``path``, fsync the folder.

    The temporary file lies in the same folder (so the rename is atomic) and gets
    the permissions a plain ``open`` would give (``mkstemp`` makes it 0600). The
    folder's fsync makes the rename itself durable.

    Args:
        path: the file to replace.
        write: writes the new content to the path it is given.

    Raises:
        OSError: the file cannot be written (nothing at ``path`` changed).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a folder we may not open: the rename stands, unsynced
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically and durably (see
    :func:`atomic_write`).

    Args:
        path: the file to replace.
        text: its new content.

    Raises:
        OSError: the file cannot be written (nothing at ``path`` changed).
    """

    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write(text)

    atomic_write(path, write)
