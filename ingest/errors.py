"""The one exception type ingest raises for bad user input."""

from __future__ import annotations

from pathlib import Path


class IngestError(ValueError):
    """A file cannot be ingested: the message names the file, the problem and the fix.

    ``str(err)`` is always a single line of the form ``"<path>: <problem>; <fix>"``
    so that bulk tools can log it next to the file and go on with the others.

    Attributes:
        path: the offending file (as given by the caller).
        problem: what is wrong, without the path.
        fix: what the user can do about it.
    """

    def __init__(self, path: str | Path, problem: str, fix: str = "") -> None:
        self.path = str(path)
        self.problem = " ".join(str(problem).split())
        self.fix = " ".join(str(fix).split())
        message = f"{self.path}: {self.problem}"
        if self.fix:
            message += f"; {self.fix}"
        super().__init__(message)


class MapFormatError(IngestError):
    """A map file is unreadable, truncated, not a 3D volume, or holds bad values."""


class HeaderError(IngestError):
    """An EMDB header XML file is unreadable, malformed or hostile."""


class MapTooLargeError(MapFormatError):
    """A map needs more memory than the caller allows or than this process has.

    Raised before anything is allocated when the header's announced size is over
    the caller's ``max_bytes`` or over the memory available, and in place of a
    ``MemoryError`` when an allocation fails anyway.
    """
