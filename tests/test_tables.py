"""Rows and columns of the dashboard's tables, as plain functions.

The rows here are generated (made-up hits and entries), not real entries; the
real maps are exercised in test_dashboard.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from dashboard.pages.common import (
    HIT_KEY_COLUMNS,
    data_table,
    hits_columns,
    hits_data_table,
)
from dashboard.tables import (
    emdb_cell,
    emdb_url,
    entry_name,
    hit_tooltips,
    hits_caption,
    hits_table_rows,
    table_columns,
    table_rows,
    with_names,
)

from .test_figures import _generated_table


def test_hits_table_rows_have_one_column_per_scale():
    hits = [
        {
            "rank": 1,
            "id": 9,
            "emdb_id": "EMD-1",
            "score": 0.98765,
            "scores": {
                "8": 0.5,
                "1": 0.91234,
                "16": 0.25,
                "2": 0.8,
                "size": -0.2,
                "fit": 0.87654,
            },
            "title": "a generated hit",
            "method": "helical",
            "resolution": 3.456,
        },
        {"rank": 2, "id": 4, "emdb_id": None, "score": 0.5, "scores": {"1": 0.5}},
    ]
    rows = hits_table_rows(hits)
    assert list(rows[0]) == [
        "rank",
        "id",
        "emdb_id",
        "score",
        "scale_1",
        "scale_2",
        "scale_8",
        "scale_16",
        "fit",
        "size",
        "rg_ratio",
        "title",
        "method",
        "resolution",
        "name",
        "emdb",
    ]
    assert rows[0]["score"] == 0.988 and rows[0]["scale_1"] == 0.912
    assert rows[0]["rg_ratio"] == pytest.approx(np.exp(-0.2), abs=0.005)
    assert rows[0]["fit"] == 0.877 and "fit" not in rows[1]
    assert rows[0]["resolution"] == 3.46
    assert rows[1]["emdb_id"] is None and rows[1]["title"] is None
    assert rows[1]["name"] == "entry 4" and rows[1]["emdb"] == "—"
    columns = table_columns(rows)
    assert [c["id"] for c in columns] == list(rows[0])
    assert columns[4]["name"] == "scale 1³"
    assert hits_table_rows([]) == []


def test_table_rows_are_json_ready():
    table = _generated_table(4, unplaced=1)
    table["fitted_pdbs"] = np.array([["6vyb", "6vxx"], [], None, ["1abc"]], object)
    rows = table_rows(table, ["id", "x", "release_date", "fitted_pdbs", "organism"])
    assert rows[0]["id"] == 1 and isinstance(rows[0]["id"], int)
    assert rows[3]["x"] is None  # masked
    assert rows[0]["release_date"] == "2015-06-01" or rows[0]["release_date"] is None
    assert rows[0]["fitted_pdbs"] == "6vyb, 6vxx"
    assert rows[0]["organism"] is None


@pytest.mark.parametrize(
    "row, name",
    [
        ({"id": 3, "title": "Spike ectodomain", "label": "x"}, "Spike ectodomain"),
        ({"id": 3, "title": " ", "label": "model 5ME2"}, "model 5ME2"),
        ({"id": 3, "source_path": "/srv/maps/emd_1832.map"}, "emd_1832.map"),
        ({"id": 3, "title": None, "label": None, "source_path": None}, "entry 3"),
    ],
)
def test_every_entry_has_a_name(row, name):
    assert entry_name(row) == name


def test_emdb_ids_are_links_and_simulated_entries_say_so():
    assert emdb_url("EMD-21457") == "https://www.ebi.ac.uk/emdb/EMD-21457"
    assert emdb_url("emd_1832") == "https://www.ebi.ac.uk/emdb/EMD-1832"
    assert emdb_url("EMD-1832](javascript:alert(1)") is None  # never markdown
    assert emdb_url(None) is None
    link = emdb_cell({"emdb_id": "EMD-6824"})
    assert link == "[EMD-6824](https://www.ebi.ac.uk/emdb/EMD-6824)"
    assert emdb_cell({"emdb_id": None, "simulated": True}) == "simulated"
    assert emdb_cell({"emdb_id": None, "simulated": False}) == "—"


def test_simulated_hits_are_named_from_the_details():
    """Hits do not carry the map's file or the simulated flag: the page reads
    them and passes them along."""
    hits = [
        {
            "rank": 1,
            "id": 5,
            "emdb_id": None,
            "score": 0.9,
            "scores": {},
            "title": None,
            "label": "model 5ME2",
        },
        {
            "rank": 2,
            "id": 6,
            "emdb_id": None,
            "score": 0.8,
            "scores": {},
            "title": None,
            "label": None,
        },
    ]
    details = {
        5: {"simulated": True, "source_path": None},
        6: {"simulated": False, "source_path": "/srv/maps/upload-x.map"},
    }
    rows = hits_table_rows(hits, details)
    assert [r["name"] for r in rows] == ["model 5ME2", "upload-x.map"]
    assert [r["emdb"] for r in rows] == ["simulated", "—"]
    assert all("source_path" not in r for r in rows)
    json.dumps(rows)
    named = with_names([{"id": 6, "emdb_id": "EMD-1"}], details)
    assert named[0]["name"] == "upload-x.map" and named[0]["emdb"].startswith("[EMD-1]")


def test_hits_tables_show_the_key_columns_first_and_keep_them_in_view():
    columns = hits_columns((1, 2, 4, 8))
    ids = [c["id"] for c in columns]
    assert ids[: len(HIT_KEY_COLUMNS)] == ["rank", "name", "emdb", "score", "evalue"]
    assert "title" not in ids and ids[-1] == "id"  # the name shows the title
    emdb = next(c for c in columns if c["id"] == "emdb")
    assert emdb["name"] == "EMDB" and emdb["presentation"] == "markdown"
    table = data_table("hits-table", columns, fixed=2)
    assert table.fixed_columns == {"headers": True, "data": 2}
    assert table.markdown_options == {"link_target": "_blank"}
    name_style = next(
        s for s in table.style_cell_conditional if s["if"] == {"column_id": "name"}
    )
    assert name_style["whiteSpace"] == "normal"  # long titles wrap, not cut


def test_hits_tables_show_the_score_terms_significance_and_per_scale_z():
    """A hit as the search gives it (made up): its E-value, shape score, fit,
    size ratio and per-scale z are columns, each header saying what it is."""
    hit = {
        "rank": 1,
        "id": 9,
        "emdb_id": "EMD-1",
        "score": 0.813,
        "scores": {"1": 0.999, "2": 0.984, "size": 0.1, "fit": 0.7},
        "shape": 0.9915,
        "terms": {"shape": 0.496, "fit": 0.35, "size": -0.005},
        "scale_z": {"1": 0.31, "2": 2.46},
        "evalue": 0.0001234,
        "significant": True,
    }
    row = hits_table_rows([hit])[0]
    assert row["evalue"] == 0.00012 and row["shape"] == 0.992
    assert row["z_1"] == 0.3 and row["z_2"] == 2.5
    assert row["rg_ratio"] == pytest.approx(np.exp(0.1), abs=0.005)
    columns = hits_columns((1, 2))
    ids = [c["id"] for c in columns]
    for key in ("evalue", "shape", "fit", "rg_ratio", "z_1", "z_2"):
        assert key in ids
    assert not any(i.startswith("scale_") for i in ids)  # z replaces the cosines
    names = {c["id"]: c["name"] for c in columns}
    assert names["evalue"] == "E-value" and names["z_1"] == "z 1³"
    tips = hit_tooltips(columns)
    assert "0.5 x shape + 0.5 x fit" not in tips["score"]  # the general formula
    assert "(1 - w) x shape + w x fit" in tips["score"]
    assert "unrelated" in tips["evalue"] and "unrelated" in tips["z_2"]
    table = hits_data_table("similar-table", (1, 2))
    assert table.tooltip_header == tips
    caption = hits_caption(
        {
            "message": "no significant match (E < 0.1); the best hit has E = 29",
            "formula": "score = 0.5 x shape + 0.5 x fit - 0.05 x |ln(Rg_query / "
            "Rg_entry)|; shape = mean cosine over scales 1, 2",
            "entries": 262,
        }
    )
    assert caption.startswith("no significant match") and "262" in caption
    assert "0.5 x shape + 0.5 x fit" in caption
    assert hits_caption(None) == ""
