"""Placing a query on the stored layout by its nearest entries."""

from __future__ import annotations

import numpy as np
import pytest

from swan_index.placement import place, place_query


def test_an_exact_match_takes_its_position():
    feats = np.eye(4)
    xy = np.arange(8.0).reshape(4, 2)
    pos, rows, near = place(feats, xy, feats[2], k=3)
    assert np.array_equal(pos, xy[2]) and rows[0] == 2 and near[0] == 0


def test_the_position_is_the_distance_weighted_mean():
    feats = np.array([[0.0], [1.0], [3.0], [10.0]])
    xy = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 9.0], [50.0, 50.0]])
    pos, rows, near = place(feats, xy, np.array([0.5]), k=2)
    assert list(rows) == [0, 1] and np.allclose(near, [0.5, 0.5])
    assert np.allclose(pos, [2.0, 0.0])  # halfway: equal distances
    with pytest.raises(ValueError, match="no laid-out entries"):
        place(np.zeros((0, 1)), np.zeros((0, 2)), np.zeros(1))


def test_a_stored_entry_as_query_lands_on_itself(store):
    ids, _ = store.vectors(store.encoder.scales[0])
    rng = np.random.default_rng(0)
    store.set_layout(ids, rng.normal(size=(len(ids), 2)), np.zeros(len(ids), int))
    target = int(ids[3])
    code = store.get_code(target)
    rg = float(store.entries(("id", "rg"), where=f"id = {target}")["rg"][0])
    placed = place_query(store, code, rg)
    xy = store.entries(("id", "x", "y"), where=f"id = {target}")
    assert placed.neighbours[0] == target
    assert np.isclose(placed.x, xy["x"][0]) and np.isclose(placed.y, xy["y"][0])
    assert len(placed.neighbours) == 5


def test_no_layout_no_placement(store):
    ids, _ = store.vectors(store.encoder.scales[0])
    assert place_query(store, store.get_code(int(ids[0])), None) is None
