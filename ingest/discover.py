"""Find map files under a path and pair each with its EMDB header XML.

Two layouts are understood:

* **EMDB mirror**: ``structures/EMD-N/map/emd_N.map.gz`` with the header in
  ``structures/EMD-N/header/emd-N-v30.xml`` (schema v3) or ``emd-N.xml``. Only the
  primary map in ``map/`` is an entry; half maps, masks and additional maps in
  ``other/`` or ``masks/`` are not.
* **loose files**: any ``.map``, ``.mrc``, ``.ccp4`` (optionally ``.gz``/``.bz2``)
  below the path; a header is paired when an XML file in the same folder (or in a
  sibling ``header/`` folder) names the same EMDB id as the map's file name.

When several headers name one entry, the v3 file (``-v30``) wins over the plain
one, which wins over the v1.9 file (``-v19``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.header import emdb_id_from_name

MAP_SUFFIXES = (".map", ".mrc", ".ccp4")
COMPRESSED_SUFFIXES = ("", ".gz", ".bz2")


@dataclass(frozen=True)
class MapEntry:
    """One map to ingest and the header that describes it (if any).

    Attributes:
        map_path: the map file.
        header_path: its EMDB header XML, or ``None``.
        emdb_id: ``"EMD-N"`` from the file name, or ``None``.
    """

    map_path: Path
    header_path: Path | None
    emdb_id: str | None


def is_map_file(path: str | Path) -> bool:
    """True when the file name ends in a map suffix (optionally compressed)."""
    name = Path(path).name.lower()
    return any(name.endswith(m + c) for m in MAP_SUFFIXES for c in COMPRESSED_SUFFIXES)


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


def _xml_files(folder: Path) -> list[Path]:
    try:
        return [
            p for p in folder.iterdir() if p.suffix.lower() == ".xml" and p.is_file()
        ]
    except OSError:
        return []


def _mirror_entry(entry_dir: Path) -> MapEntry | None:
    """The primary map of one ``EMD-N`` folder of an EMDB mirror."""
    emdb_id = emdb_id_from_name(entry_dir.name)
    maps = sorted(p for p in (entry_dir / "map").glob("*") if is_map_file(p))
    if not maps:
        return None
    primary = [p for p in maps if emdb_id_from_name(p.name) == emdb_id] or maps
    header = _best_header(_xml_files(entry_dir / "header"), emdb_id)
    return MapEntry(primary[0], header, emdb_id)


def find_entries(root: str | Path) -> Iterator[MapEntry]:
    """Yield every map under ``root`` with its header, in a stable (sorted) order.

    Args:
        root: a map file, a folder of loose files, or an EMDB mirror (its top, its
            ``structures/`` folder, or one ``EMD-N`` folder).

    Yields:
        :class:`MapEntry` objects; a map with no header has ``header_path=None``.
    """
    root = Path(root)
    if root.is_file():
        if is_map_file(root):
            emdb_id = emdb_id_from_name(root.name)
            siblings = _xml_files(root.parent) + _xml_files(
                root.parent.parent / "header"
            )
            yield MapEntry(root, _best_header(siblings, emdb_id), emdb_id)
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        here = Path(dirpath)
        if (here / "map").is_dir() and emdb_id_from_name(here.name):
            entry = _mirror_entry(here)
            if entry is not None:
                yield entry
            dirnames[:] = []  # half maps, masks, etc. are not entries
            continue
        maps = sorted(f for f in filenames if is_map_file(f))
        if not maps:
            continue
        headers = _xml_files(here) + _xml_files(here.parent / "header")
        for name in maps:
            emdb_id = emdb_id_from_name(name)
            yield MapEntry(here / name, _best_header(headers, emdb_id), emdb_id)
