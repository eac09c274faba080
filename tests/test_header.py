"""read_header: every shipped EMDB header, values checked by hand, hostile XML."""

from __future__ import annotations

import datetime as dt

import pytest

from ingest import HeaderError, read_header
from tests.conftest import HEADERS

ALL_HEADERS = sorted(p.name for p in HEADERS.glob("*.xml"))


def test_fourteen_headers_ship():
    assert len(ALL_HEADERS) == 14


@pytest.mark.parametrize("name", ALL_HEADERS)
def test_every_header_parses(name):
    meta = read_header(HEADERS / name)
    assert meta.emdb_id.startswith("EMD-")
    assert meta.resolution is not None and meta.resolution > 0
    assert meta.contour_level is not None
    assert meta.method is not None
    assert meta.release_date is not None
    assert meta.pixel_spacing is not None and meta.box is not None


@pytest.mark.parametrize(
    "name,version",
    [
        ("emd-0001-v30.xml", "3.0.0.1"),
        ("emd-0001.xml", "3.0.0.1"),
        ("emd-0001-v19.xml", "1.9.6"),
    ],
)
def test_emd_0001_by_hand(name, version):
    # Values read off the XML files by eye.
    meta = read_header(HEADERS / name)
    assert meta.emdb_id == "EMD-0001"
    assert meta.header_version == version
    assert meta.title == (
        "Cryo-EM structure of bacterial RNA polymerase-sigma54 "
        "holoenzyme transcription open complex"
    )
    assert meta.method == "singleParticle"
    assert meta.resolution == 3.4
    assert meta.contour_level == 0.018
    assert meta.contour_source.lower() == "emdb"
    assert meta.pixel_spacing == (1.06, 1.06, 1.06)
    assert meta.box == (256, 256, 256)
    assert meta.fitted_pdbs == ("6gh5",)
    assert meta.release_date == dt.date(2018, 7, 4)
    assert meta.status == "REL"
    assert meta.organism == "Escherichia coli K-12"


def test_emd_21457_v19_by_hand():
    meta = read_header(HEADERS / "emd-21457.xml")
    assert meta.emdb_id == "EMD-21457"
    assert meta.title == "SARS-CoV-2 spike ectodomain structure (open state)"
    assert meta.resolution == 3.2
    assert meta.contour_level == 0.4 and meta.contour_source == "author"
    assert meta.box == (400, 400, 400)
    assert meta.pixel_spacing == (1.05, 1.05, 1.05)
    assert meta.fitted_pdbs == ("6vyb",)
    assert meta.release_date == dt.date(2020, 3, 11)
    assert meta.sample_name == "SARS-CoV-2 prefusion spike ectodomain"
    assert meta.organism == "Severe acute respiratory syndrome coronavirus 2"


def test_older_v3_entries_by_hand():
    m1003 = read_header(HEADERS / "emd-1003-v30.xml")
    assert (m1003.resolution, m1003.contour_level) == (11.5, 82.8)
    assert m1003.pixel_spacing == (2.93, 2.93, 2.93) and m1003.box == (125, 125, 125)
    assert m1003.organism == "Escherichia coli"
    assert m1003.fitted_pdbs == ("1eg0",)
    m1001 = read_header(HEADERS / "emd-1001-v30.xml")
    assert m1001.method == "tomography" and m1001.resolution == 40.0
    assert m1001.box == (600, 600, 30)
    assert len(m1001.fitted_pdbs) == 11
    m1011 = read_header(HEADERS / "emd-1011-v30.xml")
    assert m1011.organism == "Salmonella enterica" and m1011.resolution == 16.0


def test_missing_fields_are_none(tmp_path):
    p = tmp_path / "emd-9999-v30.xml"
    p.write_text('<emd emdb_id="EMD-9999" version="3.0.0.1"><admin/></emd>')
    meta = read_header(p)
    assert meta.emdb_id == "EMD-9999"
    assert meta.resolution is None and meta.contour_level is None
    assert meta.title is None and meta.organism is None and meta.fitted_pdbs == ()


BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<emd emdb_id="EMD-1"><admin><title>&lol3;</title></admin></emd>"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE emd [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<emd emdb_id="EMD-1"><admin><title>&xxe;</title></admin></emd>"""


@pytest.mark.parametrize(
    "text,expected",
    [
        (BOMB, "refused unsafe XML"),
        (XXE, "refused unsafe XML"),
        ("<emd emdb_id='EMD-1'><admin>", "malformed XML"),
        ("", "malformed XML"),
        ("\x00\x01\x02 binary", "malformed XML"),
        ("<html><body>not found</body></html>", "not an EMDB header"),
        ("<emd version='3.0'><admin/></emd>", "no entry id"),
    ],
)
def test_bad_xml_gives_one_clear_line(tmp_path, text, expected):
    p = tmp_path / "bad.xml"
    p.write_text(text)
    with pytest.raises(HeaderError) as info:
        read_header(p)
    assert str(info.value).startswith(f"{p}: ")
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_oversized_header_refused_before_parsing(tmp_path, monkeypatch):
    import ingest.header as header

    monkeypatch.setattr(header, "MAX_HEADER_BYTES", 100)
    p = tmp_path / "big.xml"
    p.write_text("<emd emdb_id='EMD-1'>" + " " * 200 + "</emd>")
    with pytest.raises(HeaderError, match="too large"):
        read_header(p)
