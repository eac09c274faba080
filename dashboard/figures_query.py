"""The query on the archive map: a small 2D figure of the stored layout with
the hits numbered and the query placed among them
(:mod:`swan_index.placement`), as a pure function."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from dashboard.figures import TEMPLATE, message_annotation

#: Marker colours: the archive, the hits, the query.
ARCHIVE_COLOR = "#c9c9c9"
HITS_COLOR = "#f58518"
QUERY_COLOR = "#4c78a8"


def query_map_figure(
    table: Mapping[str, Any],
    hits: Sequence[int],
    placement: Mapping[str, Any] | None,
    query_name: str = "query",
) -> go.Figure:
    """The archive map with the hits numbered (1 = best) and the query as a star.

    Args:
        table: entries with ``id``, ``x``, ``y`` (the stored layout; missing
            positions are left out).
        hits: hit ids, best first.
        placement: the query's ``{"x", "y", "neighbours"}``
            (:meth:`swan_index.placement.Placement.to_dict`), or ``None``.
        query_name: for the hover and the legend.

    Returns:
        The figure; its traces are named ``archive``, ``hits`` and ``query``.
    """
    ids = np.asarray(np.ma.getdata(table.get("id", [])), np.int64)
    x = np.ma.filled(np.ma.asarray(table.get("x", []), np.float64), np.nan)
    y = np.ma.filled(np.ma.asarray(table.get("y", []), np.float64), np.nan)
    laid = np.isfinite(x) & np.isfinite(y)
    points = zip(ids[laid], x[laid], y[laid], strict=True)
    where = {int(i): (a, b) for i, a, b in points}
    fig = go.Figure(
        go.Scattergl(
            x=x[laid],
            y=y[laid],
            mode="markers",
            marker=dict(size=4, color=ARCHIVE_COLOR),
            name="archive",
            hoverinfo="skip",
        )
    )
    shown = [(rank, h) for rank, h in enumerate(hits, start=1) if int(h) in where]
    fig.add_trace(
        go.Scatter(
            x=[where[int(h)][0] for _, h in shown],
            y=[where[int(h)][1] for _, h in shown],
            mode="markers+text",
            text=[str(rank) for rank, _ in shown],
            textposition="top center",
            marker=dict(size=9, color=HITS_COLOR, line=dict(width=1, color="#fff")),
            name="hits",
            hovertemplate="hit %{text}<extra></extra>",
        )
    )
    if placement is not None:
        near = ", ".join(str(i) for i in placement.get("neighbours", []))
        fig.add_trace(
            go.Scatter(
                x=[placement["x"]],
                y=[placement["y"]],
                mode="markers",
                marker=dict(
                    size=18,
                    symbol="star",
                    color=QUERY_COLOR,
                    line=dict(width=1.5, color="#222"),
                ),
                name=f"query: {query_name}",
                hovertemplate=(
                    f"query {query_name}<br>placed by its nearest entries ({near})"
                    "<extra></extra>"
                ),
            )
        )
    fig.update_layout(
        template=TEMPLATE,
        margin=dict(l=0, r=0, t=28, b=30),
        xaxis=dict(visible=False),
        yaxis=dict(visible=False, scaleanchor="x"),
        legend=dict(orientation="h", yanchor="top", y=0.0, x=0.0),
        uirevision="query-map",
    )
    if not laid.any():
        fig.add_annotation(**message_annotation("no layout stored (swan layout)"))
    return fig
