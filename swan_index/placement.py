"""Place a query on the archive map: where a map that is not stored would lie
in the stored 2D layout (:mod:`swan_index.layout`).

The layout keeps the entries' 2D positions, not the UMAP model that made them
(UMAP's ``transform`` would need the fitted model, and the layout may be PCA),
so a query is placed by its neighbours: its layout features
(:func:`~swan_index.layout.map_features`: the finest scale's vector centred on
the archive's mean, and the standardised log radius of gyration) are compared
with every laid-out entry's, and it goes to the distance-weighted mean of the
positions of its :data:`NEIGHBOURS` nearest. A query equal to a stored entry
lands on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from swan_index.layout import MAP_SCALES, map_features

if TYPE_CHECKING:
    from encoder.code import MultiScaleCode
    from swan_index.store import Store

#: Stored entries whose positions place a query.
NEIGHBOURS = 5


@dataclass(frozen=True)
class Placement:
    """Where a query lies on the archive map.

    Attributes:
        x, y: its position in the layout's coordinates.
        neighbours: ids of the entries that placed it, nearest first.
        distances: their distances in feature space.
    """

    x: float
    y: float
    neighbours: tuple[int, ...]
    distances: tuple[float, ...]

    def to_dict(self) -> dict:
        return {
            "x": self.x,
            "y": self.y,
            "neighbours": list(self.neighbours),
            "distances": [round(d, 4) for d in self.distances],
        }


def place(
    features: np.ndarray, xy: np.ndarray, query: np.ndarray, k: int = NEIGHBOURS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The weighted mean position of ``query``'s ``k`` nearest rows.

    Args:
        features: ``[N, d]`` the entries' features.
        xy: ``[N, 2]`` their positions.
        query: ``[d]`` the query's features.
        k: neighbours used.

    Returns:
        ``(position [2], rows of the neighbours [k], distances [k])``, nearest
        first; weights ``1 / distance`` (an exact match takes its position).

    Raises:
        ValueError: no entries.
    """
    if not len(features):
        raise ValueError("no laid-out entries to place the query among")
    dist = np.linalg.norm(features - query[None], axis=1)
    rows = np.argsort(dist, kind="stable")[: max(1, k)]
    near = dist[rows]
    if near[0] < 1e-9:
        return xy[rows[0]].astype(np.float64), rows, near
    weights = 1.0 / near
    return (weights[:, None] * xy[rows]).sum(0) / weights.sum(), rows, near


def place_query(
    store: Store, code: MultiScaleCode, rg: float | None, k: int = NEIGHBOURS
) -> Placement | None:
    """Where the query (its first pose) lies on the store's layout.

    Args:
        store: an open store (the caller holds whatever lock it needs).
        code: the query's code (row 0 is used).
        rg: its radius of gyration, Å (``None``: unknown).
        k: neighbours used.

    Returns:
        The placement, or ``None`` when the store has no layout.
    """
    table = store.entries(("id", "rg", "x", "y"))
    ids = np.ma.getdata(table["id"]).astype(np.int64)
    x = np.ma.filled(np.ma.asarray(table["x"], np.float64), np.nan)
    y = np.ma.filled(np.ma.asarray(table["y"], np.float64), np.nan)
    laid = np.isfinite(x) & np.isfinite(y)
    if not laid.any():
        return None
    vectors = []
    for i, side in enumerate(store.encoder.scales[-MAP_SCALES:]):
        scale_ids, vecs = store.vectors(side)
        order = np.searchsorted(scale_ids, ids)
        if not np.array_equal(scale_ids[order], ids):
            raise RuntimeError(f"{store.path}: entries and vectors out of step; reopen")
        row = np.asarray(code.vectors[len(code.scales) - MAP_SCALES + i][0])
        vectors.append(np.vstack([vecs[order], row[None]]))
    rgs = np.ma.filled(np.ma.asarray(table["rg"], np.float64), np.nan)
    sizes = np.append(rgs, np.nan if rg is None else rg)
    # the query joins the archive for the centring (one row in thousands)
    feats = map_features(vectors, sizes)
    archive, query = feats[:-1][laid], feats[-1]
    xy = np.stack([x[laid], y[laid]], axis=1)
    pos, rows, near = place(archive, xy, query, k)
    return Placement(
        float(pos[0]),
        float(pos[1]),
        tuple(int(i) for i in ids[laid][rows]),
        tuple(float(d) for d in near),
    )
