"""The page's address (dashboard/pages/permalink.py): a view written as a query
string and read back gives the same view; what an address names but this store
lacks is said, not silently dropped."""

from __future__ import annotations

import pytest
from dash import no_update

from dashboard.pages import filtering, permalink

from .test_pages import FakeService, _text

BOUNDS = [3.2, 7.3]


class Service(FakeService):
    """The stand-in service, finding entries by EMDB id too."""

    def entry(self, key):  # noqa: ANN001, ANN201
        if isinstance(key, str) and not key.isdigit():
            quoted = "'" + key.replace("'", "''") + "'"
            cur = self._sql("SELECT id FROM entries", f"emdb_id = {quoted}")
            row = cur.fetchone()
            if row is None:
                raise KeyError(f"no entry {key}")
            key = row[0]
        return super().entry(int(key))


@pytest.fixture
def service():
    svc = Service()
    yield svc
    svc.db.close()


DEFAULT = {
    "where": None,
    "res": BOUNDS,
    "keep": [],
    "methods": [],
    "k": 10,
    "color": "cluster",
    "entry": None,
}


def _filters(service, where=None, res=None, methods=None, keep=None):  # noqa: ANN001, ANN202
    """``filter-state`` as the filter callback leaves it."""
    _, _, state = filtering.on_filter(
        service, where, res or BOUNDS, methods, BOUNDS, None, keep
    )
    return state


def test_the_default_view_has_a_bare_address(service):
    assert permalink.on_view(service, _filters(service), 10, "cluster", None) == ""
    restored = permalink.on_address(service, "", DEFAULT, BOUNDS, ["singleParticle"])
    assert all(v is no_update for v in restored[:-1]) and restored[-1] is None


def test_a_view_round_trips_through_its_address(service):
    filters = _filters(
        service, "rg > 10", [3.5, 6.0], ["singleParticle"], [filtering.KEEP_UNRESOLVED]
    )
    search = permalink.on_view(service, filters, 25, "resolution", 2)
    assert search.startswith("?where=rg+%3E+10&res=3.5-6&keep=1&method=")
    assert search.endswith("&k=25&color=resolution&entry=EMD-21457")
    got = permalink.on_address(service, search, DEFAULT, BOUNDS, ["singleParticle"])
    assert got[:-1] == (
        "rg > 10",
        [3.5, 6.0],
        [filtering.KEEP_UNRESOLVED],
        ["singleParticle"],
        "25",
        "resolution",
        2,
    )
    assert got[-1] is None
    # the page showing that view: nothing left to change
    now = {
        "where": "rg > 10",
        "res": [3.5, 6.0],
        "keep": [filtering.KEEP_UNRESOLVED],
        "methods": ["singleParticle"],
        "k": 25,
        "color": "resolution",
        "entry": 2,
    }
    again = permalink.on_address(service, search, now, BOUNDS, ["singleParticle"])
    assert all(v is no_update for v in again[:-1])


def test_an_entry_without_an_emdb_id_is_named_by_its_store_id(service):
    assert permalink.on_view(service, None, 10, "cluster", 3) == "?entry=3"
    got = permalink.on_address(service, "?entry=3", DEFAULT, BOUNDS, [])
    assert got[6] == 3


def test_what_the_address_names_but_the_store_lacks_is_said(service):
    search = "?entry=EMD-99999&method=helical&color=mood&res=abc&zoom=3"
    got = permalink.on_address(service, search, DEFAULT, BOUNDS, ["singleParticle"])
    assert got[3] is no_update and got[5] is no_update and got[6] is no_update
    text = _text(got[-1])
    assert got[-1].className == "swan-error"
    for part in (
        "entry EMD-99999: not in this store",
        "method helical: no entry has it here",
        "color='mood' is not one of",
        "res='abc' is not a range",
        "zoom: not part of a view",
    ):
        assert part in text


def test_a_range_outside_the_slider_is_kept_within_it(service):
    got = permalink.on_address(service, "?res=1-5", DEFAULT, BOUNDS, [])
    assert got[1] == [3.2, 5.0]


def test_an_invalid_hits_per_search_is_left_to_the_box_that_checks_it(service):
    """k=1000 is passed on: the hits box clamps it to 100 and says so."""
    got = permalink.on_address(service, "?k=1000", DEFAULT, BOUNDS, [])
    assert got[4] == "1000"
    shown, msg = filtering.on_k(got[4])
    assert shown == 100 and "using 100" in _text(msg)
    # ... and an out-of-range k is never written
    assert permalink.view_query(None, 1000) == ""


def test_entries_with_no_resolution_can_be_kept(service):
    where, msg, _ = filtering.on_filter(service, None, [3.0, 6.0], None, BOUNDS)
    assert "1 entry with no resolution is hidden by the resolution range" in _text(msg)
    assert service.count(where) == 2
    where, msg, state = filtering.on_filter(
        service, None, [3.0, 6.0], None, BOUNDS, None, [filtering.KEEP_UNRESOLVED]
    )
    assert "1 entry with no resolution is kept" in _text(msg)
    assert service.count(where) == 3 and state["keep"] is True
