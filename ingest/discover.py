"""Find map files under a path and pair each with its EMDB header XML.

Two layouts are understood:

* **EMDB mirror**: ``structures/EMD-N/map/emd_N.map.gz`` with the header in
  ``structures/EMD-N/header/emd-N-v30.xml`` (schema v3) or ``emd-N.xml``. Only the
  primary map in ``map/`` is an entry; half maps, masks and additional maps in
  ``other/`` or ``masks/`` are not.
* **loose files**: any ``.map``, ``.mrc``, ``.ccp4`` (optionally ``.gz``/``.bz2``)
  below the path; a header is paired when an XML file in the same folder (or in a
  sibling ``header/`` folder) names the same EMDB id as the map's file name. With
  ``models=True``, atomic models (``.pdb``, ``.ent``, ``.cif``, ``.mmcif``,
  optionally ``.gz``) too, as :class:`ModelEntry` (:mod:`ingest.models`).

When several headers name one entry, the v3 file (``-v30``) wins over the plain
one, which wins over the v1.9 file (``-v19``).

What cannot be used is reported, never skipped in silence: a folder that cannot be
listed, a map name that is a dangling symbolic link or a link loop, something that
is not a regular file (a FIFO would block its reader). Each problem is one
:class:`~ingest.errors.IngestError` line, and the walk goes on with the rest.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import IngestError
from ingest.header import emdb_id_from_name
from ingest.models import is_model_file

log = logging.getLogger(__name__)

MAP_SUFFIXES = (".map", ".mrc", ".ccp4")
COMPRESSED_SUFFIXES = ("", ".gz", ".bz2")

#: What :func:`find_entries` calls with each problem it finds.
OnError = Callable[[IngestError], None]


@dataclass(frozen=True)
class MapEntry:
    """One map to ingest and the header that describes it (if any).

    Attributes:
        map_path: the map file.
        header_path: its EMDB header XML, or ``None``.
        emdb_id: ``"EMD-N"`` from the file name, or ``None``.
        allow_generated: store the map even when its header says the latent
            prior generated it (set by the indexer; default: refuse it).
    """

    map_path: Path
    header_path: Path | None
    emdb_id: str | None
    allow_generated: bool = False

    @property
    def path(self) -> Path:
        """The file to read."""
        return self.map_path


@dataclass(frozen=True)
class ModelEntry:
    """An atomic model file to ingest as simulated maps.

    Attributes:
        model_path: the PDB/mmCIF file.
        resolutions: the resolutions (Å) to simulate it at; set by the indexer
            (those not yet stored).
        sha256: the file's content hash, when already computed.
        max_atoms: most atoms allowed (:data:`ingest.models.MAX_MODEL_ATOMS`).
        assembly: simulate the first biological assembly when the file has one.
    """

    model_path: Path
    resolutions: tuple[float, ...] = ()
    sha256: str | None = None
    max_atoms: int | None = None
    assembly: bool = True

    @property
    def path(self) -> Path:
        """The file to read."""
        return self.model_path


def is_map_file(path: str | Path) -> bool:
    """True when the file name ends in a map suffix (optionally compressed)."""
    name = Path(path).name.lower()
    return any(name.endswith(m + c) for m in MAP_SUFFIXES for c in COMPRESSED_SUFFIXES)


def path_error(
    path: str | Path, exc: OSError, left_out: str | None = None
) -> IngestError:
    """The one-line error for a path the file system refused.

    Args:
        path: the file or folder.
        exc: what ``os.stat``, ``os.listdir`` or ``open`` raised for it.
        left_out: for a folder that could not be listed, the maps this left out
            (e.g. ``"the maps in it"``).

    Returns:
        An :class:`IngestError` ``"PATH: problem; fix"`` (a dangling link names its
        target).
    """
    path = str(path)
    folder = left_out is not None
    what = "folder" if folder else "map file"
    if exc.errno == errno.ELOOP:
        problem, fix = "symbolic link loop", f"point the link at a {what} or remove it"
    elif exc.errno == errno.ENOENT and os.path.islink(path):
        problem = f"dangling symbolic link (its target {os.readlink(path)} is missing)"
        fix = f"point the link at an existing {what} or remove it"
    elif exc.errno in (errno.ENOENT, errno.ENOTDIR):
        problem, fix = "no such file or folder", "check the path"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        problem = "permission denied"
        mode = "a+rx" if folder else "a+r"
        fix = f"make it readable by this user (chmod {mode}) and run again"
    else:
        problem = (exc.strerror or type(exc).__name__).lower()
        fix = "check the file system and run again"
    if folder:
        problem = f"cannot list this folder ({problem}), {left_out} were left out"
    return IngestError(path, problem, fix)


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def stat_map(path: str | Path) -> os.stat_result:
    """``os.stat`` of a map file that must be a regular file (following links).

    Args:
        path: the map file.

    Returns:
        Its stat result.

    Raises:
        IngestError: it is missing, a dangling link or a link loop, cannot be
            reached, or is not a regular file (a named pipe would block a reader).
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise path_error(path, exc) from None
    if not stat.S_ISREG(st.st_mode):
        raise IngestError(
            path,
            f"{_file_kind(st.st_mode)}, not a map file",
            "remove it from the folder or name a map file",
        )
    return st


def _header_rank(path: Path) -> int:
    name = path.name.lower()
    if "-v30" in name or "_v30" in name:
        return 0
    if "-v19" in name or "_v19" in name:
        return 2
    return 1


def _best_header(candidates: Iterable[Path], emdb_id: str | None) -> Path | None:
    if emdb_id is None:
        return None
    matching = [p for p in candidates if emdb_id_from_name(p.name) == emdb_id]
    return min(matching, key=lambda p: (_header_rank(p), p.name)) if matching else None


def _listdir(
    folder: Path, report: OnError | None, left_out: str = "the maps in it"
) -> list[str] | None:
    """Sorted names in ``folder``: ``[]`` when there is no such folder, ``None``
    (and a report saying what ``left_out``) when it exists but cannot be listed."""
    try:
        return sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        if report is not None:
            report(path_error(folder, exc, left_out))
        return None


def _xml_files(folder: Path, names: Iterable[str]) -> list[Path]:
    return [
        folder / n
        for n in names
        if n.lower().endswith(".xml") and os.path.isfile(folder / n)
    ]


class _Walk:
    """State of one :func:`find_entries` walk: where problems go, and the header
    folders already listed (each listed, and reported, once)."""

    def __init__(self, report: OnError) -> None:
        self.report = report
        self._headers: dict[Path, list[Path] | None] = {}

    def headers_in(self, folder: Path) -> list[Path] | None:
        """The XML files of a ``header/`` folder; ``None`` when it cannot be
        listed (reported: the maps it describes are left out, rather than stored
        without their header's contour and metadata)."""
        if folder not in self._headers:
            names = _listdir(folder, self.report, "the maps it describes")
            self._headers[folder] = None if names is None else _xml_files(folder, names)
        return self._headers[folder]

    def regular(self, path: Path) -> bool:
        """True for a regular map file; anything else is reported."""
        try:
            stat_map(path)
        except IngestError as err:
            self.report(err)
            return False
        return True

    def mirror_entry(self, entry_dir: Path) -> MapEntry | None:
        """The primary map of one ``EMD-N`` folder of an EMDB mirror."""
        emdb_id = emdb_id_from_name(entry_dir.name)
        maps = [
            entry_dir / "map" / n
            for n in _listdir(entry_dir / "map", self.report) or []
            if is_map_file(n)
        ]
        if not maps:
            return None
        primary = [p for p in maps if emdb_id_from_name(p.name) == emdb_id] or maps
        headers = self.headers_in(entry_dir / "header")
        if headers is None or not self.regular(primary[0]):
            return None
        return MapEntry(primary[0], _best_header(headers, emdb_id), emdb_id)

    def loose_entries(
        self, here: Path, filenames: list[str], models: bool = False
    ) -> Iterator[MapEntry | ModelEntry]:
        """The map files (and model files, with ``models``) of one folder of
        loose files."""
        if models:
            for name in sorted(f for f in filenames if is_model_file(f)):
                if self.regular(here / name):
                    yield ModelEntry(here / name)
        maps = sorted(f for f in filenames if is_map_file(f))
        if not maps:
            return
        own = _xml_files(here, filenames)
        extra = self.headers_in(here.parent / "header")
        for name in maps:
            emdb_id = emdb_id_from_name(name)
            if extra is None and emdb_id is not None:
                continue  # its header folder cannot be read: reported
            if self.regular(here / name):
                headers = own + (extra or [])
                yield MapEntry(here / name, _best_header(headers, emdb_id), emdb_id)


def _warn(err: IngestError) -> None:
    log.warning("%s", err)


def find_entries(
    root: str | Path, onerror: OnError | None = None, models: bool = False
) -> Iterator[MapEntry | ModelEntry]:
    """Yield every map under ``root`` with its header, in a stable (sorted) order.

    Problems are reported to ``onerror`` and the walk goes on: a folder that cannot
    be listed (its maps are left out), a ``header/`` folder that cannot be listed
    (the maps it describes are left out), a map name that is a dangling link, a
    link loop or not a regular file. Links to folders are not followed.

    Args:
        root: a map file, a folder of loose files, or an EMDB mirror (its top, its
            ``structures/`` folder, or one ``EMD-N`` folder).
        onerror: called with one :class:`IngestError` per problem. Without it,
            problems below ``root`` are logged as warnings, and a ``root`` that
            does not exist yields nothing (a map file named as ``root`` is yielded
            as given: reading it says what is wrong with it).
        models: also yield the atomic model files (loose files only; an EMDB
            mirror's entries are maps).

    Yields:
        :class:`MapEntry` objects; a map with no header has ``header_path=None``.
        With ``models``, :class:`ModelEntry` objects too (a folder's models
        before its maps).
    """
    root = Path(root)
    walk = _Walk(onerror or _warn)
    try:
        is_dir = stat.S_ISDIR(os.stat(root).st_mode)
    except OSError as exc:
        if models and is_model_file(root):
            yield ModelEntry(root)  # reading it says what is wrong with it
            return
        if not is_map_file(root):
            if onerror is not None:
                onerror(path_error(root, exc))
            return
        is_dir = False
    if not is_dir:
        if models and is_model_file(root):
            yield ModelEntry(root)
        elif is_map_file(root):
            emdb_id = emdb_id_from_name(root.name)
            # the map's own folder may be unlistable (mode --x): no header from it
            own = _xml_files(root.parent, _listdir(root.parent, None) or [])
            extra = walk.headers_in(root.parent.parent / "header")
            if extra is not None or emdb_id is None:
                headers = own + (extra or [])
                yield MapEntry(root, _best_header(headers, emdb_id), emdb_id)
        return

    def unlisted(exc: OSError) -> None:
        walk.report(path_error(exc.filename or root, exc, "the maps in it"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unlisted):
        dirnames.sort()
        here = Path(dirpath)
        if "map" in dirnames and emdb_id_from_name(here.name):
            entry = walk.mirror_entry(here)
            if entry is not None:
                yield entry
            dirnames[:] = []  # half maps, masks, etc. are not entries
            continue
        yield from walk.loose_entries(here, filenames, models)
