"""Describe density maps: grid, voxel size, origin, contour, resolution, warnings.

FILE may be a map (.map/.mrc/.ccp4, plain/.gz/.bz2) or a folder (every map below it,
EMDB mirror layouts included). A header XML found next to a map (emd-N-v30.xml,
emd-N.xml) supplies the EMDB id, resolution and recommended contour.

Exit status: 0 when every file was read, 1 when any failed (each failure is one
line on stderr naming the file; the other files are still described).

examples:
  $ swan info data/maps/emd_1832.map
  $ swan info data/maps --json
  $ swan info emd_3001.map.gz --contour 0.3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ingest import (
    EntryMetadata,
    IngestError,
    MapEntry,
    choose_contour,
    emdb_id_from_name,
    find_entries,
    read_header,
    read_map,
)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register ``swan info``'s arguments."""
    parser.add_argument("files", nargs="+", metavar="FILE", help="map files or folders")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON array on stdout"
    )
    parser.add_argument(
        "--contour",
        type=float,
        default=None,
        help="contour level to report instead of the header's/auto",
    )


def _entries(paths: list[str]) -> list[MapEntry | IngestError]:
    out: list[MapEntry | IngestError] = []
    for raw in paths:
        path = Path(raw)
        found = list(find_entries(path)) if path.exists() else []
        if not found:
            problem = (
                "no such file or folder"
                if not path.exists()
                else "no map files (.map/.mrc/.ccp4, optionally .gz/.bz2) found"
            )
            out.append(IngestError(path, problem, "check the path"))
        out.extend(found)
    return out


def describe(entry: MapEntry, contour: float | None = None) -> dict[str, Any]:
    """The ``swan info --json`` record of one map.

    Raises:
        IngestError: the map cannot be read.
    """
    dmap = read_map(entry.map_path)
    warnings = list(dmap.warnings)
    meta: EntryMetadata | None = None
    if entry.header_path is not None:
        try:
            meta = read_header(entry.header_path)
        except IngestError as err:
            warnings.append(f"header ignored: {err}")
    level, source = choose_contour(dmap, contour, meta)
    return {
        "path": str(entry.map_path),
        "emdb_id": (meta.emdb_id if meta else None)
        or entry.emdb_id
        or emdb_id_from_name(entry.map_path.name),
        "header_path": str(entry.header_path) if meta else None,
        "title": meta.title if meta else None,
        "method": meta.method if meta else None,
        "shape": list(dmap.shape),
        "voxel_size": [round(v, 6) for v in dmap.voxel_size],
        "origin": [round(v, 4) for v in dmap.origin],
        "mode": dmap.mode,
        "contour": round(level, 6),
        "contour_source": source,
        "resolution": meta.resolution if meta else None,
        "extent_angstrom": [round(v, 3) for v in dmap.extent_angstrom],
        "sha256": dmap.sha256,
        "warnings": warnings,
    }


def _text(rec: dict[str, Any]) -> str:
    z, y, x = rec["shape"]
    res = f"{rec['resolution']:g} Å" if rec["resolution"] is not None else "unknown"
    lines = [
        f"{rec['path']}",
        f"  EMDB id     {rec['emdb_id'] or '-'}"
        + (f"  ({rec['title']})" if rec["title"] else ""),
        f"  grid        {x} x {y} x {z} (x, y, z), mode {rec['mode']}",
        "  voxel size  " + " x ".join(f"{v:.4g}" for v in rec["voxel_size"]) + " Å",
        "  origin      " + ", ".join(f"{v:.2f}" for v in rec["origin"]) + " Å",
        "  extent      "
        + " x ".join(f"{v:.1f}" for v in rec["extent_angstrom"])
        + " Å",
        f"  contour     {rec['contour']:.4g} ({rec['contour_source']})",
        f"  resolution  {res}",
    ]
    lines += [f"  warning     {w}" for w in rec["warnings"]]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run ``swan info``; returns 0 if every file was read, else 1."""
    records: list[dict[str, Any]] = []
    failed = 0
    for entry in _entries(args.files):
        if isinstance(entry, IngestError):
            failed += 1
            print(f"error: {entry}", file=sys.stderr)
            records.append({"path": entry.path, "error": str(entry)})
            continue
        try:
            rec = describe(entry, args.contour)
        except IngestError as err:
            failed += 1
            print(f"error: {err}", file=sys.stderr)
            records.append({"path": str(entry.map_path), "error": str(err)})
            continue
        records.append(rec)
        if not args.json:
            print(_text(rec))
    if args.json:
        json.dump(records, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return 1 if failed else 0
