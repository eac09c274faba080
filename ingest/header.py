"""EMDB header XML (schema v3.x and the older v1.9) -> :class:`EntryMetadata`.

Parsing goes through defusedxml with DTDs, entity declarations and external
references forbidden, so entity bombs and external-entity tricks are refused, and
files over :data:`MAX_HEADER_BYTES` are refused before parsing. Missing fields are
``None``: nothing is guessed.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as SafeET

from ingest.errors import HeaderError

#: EMDB headers are tens of kB; anything this large is not one.
MAX_HEADER_BYTES = 32 * 2**20

_EMDB_ID = re.compile(r"(?:EMD|emd)[-_]?(\d{4,})")


@dataclass(frozen=True)
class EntryMetadata:
    """What an EMDB header says about an entry. Missing fields are ``None``.

    Attributes:
        emdb_id: ``"EMD-NNNN"``.
        title: entry title.
        method: ``singleParticle``, ``helical``, ``subtomogramAveraging``,
            ``tomography``, ``electronCrystallography`` ... as EMDB spells it.
        resolution: resolution by author, Å.
        contour_level: recommended (primary) contour level, map units.
        contour_source: who recommended it (``author``, ``EMDB``...).
        pixel_spacing: Å per voxel along ``(x, y, z)``.
        box: grid dimensions ``(columns, rows, sections)`` as the header states.
        sample_name: name of the sample.
        organism: first natural-source organism named in the sample.
        organisms: every distinct natural-source organism, in document order.
        fitted_pdbs: PDB ids of fitted models (lower case).
        release_date: map release date.
        status: processing status code (``REL``, ``HPUB``, ``OBS`` ...).
        header_version: schema version of the XML (``"3.0.0.1"``, ``"1.9.6"``...).
        path: the XML file read.
    """

    emdb_id: str | None = None
    title: str | None = None
    method: str | None = None
    resolution: float | None = None
    contour_level: float | None = None
    contour_source: str | None = None
    pixel_spacing: tuple[float, float, float] | None = None
    box: tuple[int, int, int] | None = None
    sample_name: str | None = None
    organism: str | None = None
    organisms: tuple[str, ...] = ()
    fitted_pdbs: tuple[str, ...] = ()
    release_date: dt.date | None = None
    status: str | None = None
    header_version: str | None = None
    path: str | None = None


def emdb_id_from_name(name: str) -> str | None:
    """``"emd_1832.map"`` -> ``"EMD-1832"``; ``None`` when the name has no id."""
    match = _EMDB_ID.search(Path(name).name)
    return f"EMD-{match.group(1)}" if match else None


def _text(node: Element | None, path: str) -> str | None:
    if node is None:
        return None
    found = node.find(path)
    if found is None or found.text is None:
        return None
    text = " ".join(found.text.split())
    return text or None


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def _int(text: str | None) -> int | None:
    value = _float(text)
    return int(value) if value is not None else None


def _date(text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        return None


def _triple(values: list[str | None], cast):  # noqa: ANN001, ANN202
    converted = [cast(v) for v in values]
    return None if any(v is None for v in converted) else tuple(converted)


def _unique(items) -> tuple[str, ...]:  # noqa: ANN001
    seen: dict[str, None] = {}
    for item in items:
        if item:
            seen.setdefault(" ".join(item.split()), None)
    return tuple(seen)


def _parse_v3(root: Element, path: str) -> EntryMetadata:
    admin = root.find("admin")
    mp = root.find("map")
    contour = None
    contour_source = None
    if mp is not None:
        contours = mp.findall("contour_list/contour")
        primary = [c for c in contours if c.get("primary", "").lower() == "true"]
        chosen = (primary or contours or [None])[0]
        contour = _float(_text(chosen, "level"))
        contour_source = _text(chosen, "source")
    sd = root.find("structure_determination_list/structure_determination")
    resolution = None
    for candidate in root.iter("final_reconstruction"):
        resolution = _float(_text(candidate, "resolution"))
        if resolution is not None:
            break
    sample = root.find("sample")
    organisms = _unique(
        node.text for node in (sample.iter("organism") if sample is not None else [])
    )
    release = _date(_text(admin, "key_dates/map_release"))
    return EntryMetadata(
        emdb_id=root.get("emdb_id") or None,
        title=_text(admin, "title"),
        method=_text(sd, "method"),
        resolution=resolution,
        contour_level=contour,
        contour_source=contour_source,
        pixel_spacing=_triple([_text(mp, f"pixel_spacing/{a}") for a in "xyz"], _float),
        box=_triple(
            [_text(mp, f"dimensions/{a}") for a in ("col", "row", "sec")], _int
        ),
        sample_name=_text(sample, "name"),
        organism=organisms[0] if organisms else None,
        organisms=organisms,
        fitted_pdbs=_unique(
            (n.text or "").lower()
            for n in root.findall("crossreferences/pdb_list/pdb_reference/pdb_id")
        ),
        release_date=release,
        status=_text(admin, "current_status/code"),
        header_version=root.get("version"),
        path=path,
    )


def _parse_v19(root: Element, path: str) -> EntryMetadata:
    dep = root.find("deposition")
    mp = root.find("map")
    contour_node = mp.find("contourLevel") if mp is not None else None
    sample = root.find("sample")
    organisms = _unique(
        node.text
        for node in (sample.iter("sciSpeciesName") if sample is not None else [])
    )
    code = root.get("accessCode")
    return EntryMetadata(
        emdb_id=f"EMD-{code}" if code else None,
        title=_text(dep, "title"),
        method=_text(root, "processing/method"),
        resolution=_float(_text(root, "processing/reconstruction/resolutionByAuthor")),
        contour_level=_float(contour_node.text if contour_node is not None else None),
        contour_source=contour_node.get("source") if contour_node is not None else None,
        pixel_spacing=_triple(
            [_text(mp, f"pixelSpacing/pixel{a}") for a in "XYZ"], _float
        ),
        box=_triple(
            [_text(mp, f"dimensions/num{a}") for a in ("Columns", "Rows", "Sections")],
            _int,
        ),
        sample_name=_text(sample, "name"),
        organism=organisms[0] if organisms else None,
        organisms=organisms,
        fitted_pdbs=_unique(
            (n.text or "").lower()
            for n in root.findall("deposition/fittedPDBEntryIdList/fittedPDBEntryId")
        ),
        release_date=_date(_text(dep, "mapReleaseDate")),
        status=_text(dep, "status"),
        header_version=root.get("version"),
        path=path,
    )


def read_header(path: str | Path) -> EntryMetadata:
    """Parse an EMDB header XML file (v3.x ``<emd>`` or v1.9 ``<emdEntry>``).

    Args:
        path: the XML file (plain text).

    Returns:
        The :class:`EntryMetadata`; fields the file does not give are ``None``.

    Raises:
        HeaderError: the file is missing, too large, not well-formed XML, uses
            DTDs/entities (refused for safety), or is not an EMDB header.
    """
    path = Path(path)
    if not path.is_file():
        raise HeaderError(path, "no such file", "check the path")
    size = path.stat().st_size
    if size > MAX_HEADER_BYTES:
        raise HeaderError(
            path,
            f"is {size:,} bytes, too large for an EMDB header",
            "pass the entry's header XML (emd-N-v30.xml)",
        )
    try:
        root = SafeET.parse(path, forbid_dtd=True).getroot()
    except defusedxml.DefusedXmlException as err:
        raise HeaderError(
            path,
            f"refused unsafe XML ({type(err).__name__})",
            "EMDB headers have no DTD or entities; use the file as distributed by EMDB",
        ) from err
    except ParseError as err:
        raise HeaderError(
            path, f"malformed XML ({err})", "download the header again"
        ) from err
    except (OSError, UnicodeError) as err:
        raise HeaderError(path, f"cannot be read ({err})", "check the file") from err
    tag = root.tag.rsplit("}", 1)[-1]
    if tag == "emd":
        meta = _parse_v3(root, str(path))
    elif tag == "emdEntry":
        meta = _parse_v19(root, str(path))
    else:
        raise HeaderError(
            path,
            f"root element <{tag}> is not an EMDB header",
            "expected <emd> (schema v3) or <emdEntry> (v1.9)",
        )
    if meta.emdb_id is None:
        raise HeaderError(
            path,
            "EMDB header has no entry id",
            "the header is incomplete; download it again",
        )
    return meta
