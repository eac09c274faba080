"""3D views of the dashboard: isosurfaces of stored previews and of the
coarse-to-fine reconstructions, as pure functions of volumes ``[z, y, x]``.

Every volume is drawn lightly smoothed (:data:`SMOOTH_SIGMA`) and contoured to
enclose the volume the map's own contour enclosed (:func:`contour_level`,
:func:`matched_levels`), in scenes that show the whole box at one scale
(:func:`_scene`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures import TEMPLATE, message_annotation

#: Isosurface level of volumes in [0, 1] that have no zero background, and the
#: default reference level of :func:`matched_levels`.
ISO_LEVEL = 0.5
#: Gaussian smoothing (sigma, voxels) of every volume drawn in 3D. A stored preview
#: is a 32^3 box average of a map thresholded at its contour: drawn raw, its
#: staircase and one-voxel bridges break thin or high-resolution density into
#: fragments (EMD-21457's zoned domain did); a light low-pass keeps it whole.
SMOOTH_SIGMA = 0.6


def _mesh(volume: np.ndarray | None, level: float, color: str) -> go.Mesh3d | None:
    """Marching-cubes isosurface of ``volume`` ``[z, y, x]`` at ``level`` as a
    Mesh3d (x, y, z in voxels), or None when there is no surface."""
    from skimage.measure import marching_cubes

    if volume is None:
        return None
    vol = np.asarray(volume, np.float32)
    if vol.ndim != 3 or min(vol.shape) < 2 or not np.all(np.isfinite(vol)):
        return None
    if not (vol.min() < level < vol.max()):
        return None
    verts, faces, _, _ = marching_cubes(vol, level)
    return go.Mesh3d(
        x=verts[:, 2].astype(np.float32),
        y=verts[:, 1].astype(np.float32),
        z=verts[:, 0].astype(np.float32),
        i=faces[:, 0].astype(np.int32),
        j=faces[:, 1].astype(np.int32),
        k=faces[:, 2].astype(np.int32),
        color=color,
        flatshading=False,
        lighting=dict(ambient=0.35, diffuse=0.8, specular=0.25, roughness=0.6),
        lightposition=dict(x=100, y=200, z=150),
        hoverinfo="skip",
        showscale=False,
    )


def smoothed(volume: np.ndarray, sigma: float = SMOOTH_SIGMA) -> np.ndarray:
    """A volume low-passed for drawing (``scipy.ndimage.gaussian_filter``).

    Args:
        volume: ``[z, y, x]``.
        sigma: Gaussian sigma in voxels (0: unchanged).

    Returns:
        float32 array of ``volume``'s shape (0 beyond the edges).
    """
    from scipy import ndimage

    vol = np.asarray(volume, np.float32)
    return ndimage.gaussian_filter(vol, sigma, mode="constant") if sigma > 0 else vol


def contour_level(volume: np.ndarray, smooth: np.ndarray) -> float:
    """The level of ``smooth`` (``volume`` smoothed) that encloses as many voxels
    as the map's contour did. Previews are 0 outside the contour, so that is the
    fraction of ``volume`` above 0.

    Args:
        volume: a stored preview ``[g, g, g]`` (0 outside the map's contour).
        smooth: the same volume as drawn (:func:`smoothed`).

    Returns:
        The level; :data:`ISO_LEVEL` for a volume with no zero background.
    """
    inside = float(np.mean(np.asarray(volume) > 0))
    if not 0.0 < inside < 1.0:
        return float(ISO_LEVEL)
    return _level_inside(np.asarray(smooth, np.float32), inside)


def _scene(grid: int) -> dict[str, Any]:
    """A 3D scene showing the whole ``grid^3`` box: one scale for every volume of
    that grid, nothing clipped at the edges. The camera stands back far enough
    for the sphere inscribed in the box to stay in view however it is turned
    (canonical volumes fill 0.9 of the box along their longest axis)."""
    axis = dict(visible=False, range=[-0.5, grid - 0.5], autorange=False)
    return dict(
        aspectmode="cube",
        xaxis=axis,
        yaxis=axis,
        zaxis=axis,
        camera=dict(eye=dict(x=1.2, y=1.2, z=0.8)),
    )


def isosurface_figure(
    volume: np.ndarray | None,
    level: float | None = None,
    title: str | None = None,
    color: str = "#4c78a8",
    smooth: float = SMOOTH_SIGMA,
) -> go.Figure:
    """The 3D isosurface of a volume (a stored preview, ``[g, g, g]`` in [0, 1]).

    Args:
        volume: the volume, or None (no preview stored).
        level: isosurface level of the smoothed volume; None: the level that
            encloses the volume the map's contour enclosed (:func:`contour_level`).
        title: shown above the view.
        color: of the surface.
        smooth: Gaussian sigma in voxels (:data:`SMOOTH_SIGMA`; 0: none).

    Returns:
        The figure; ``layout.meta["level"]`` is the level drawn. A missing volume,
        or one with no surface at the level, gives an empty figure that says so
        (never an exception).
    """
    mesh, drawn, grid = None, level, 32
    if volume is not None:
        vol = np.asarray(volume, np.float32)
        grid = max(vol.shape) if vol.ndim == 3 else grid
        smooth_vol = smoothed(vol, smooth) if vol.ndim == 3 else vol
        drawn = contour_level(vol, smooth_vol) if level is None else level
        mesh = _mesh(smooth_vol, drawn, color)
    fig = go.Figure([] if mesh is None else [mesh])
    fig.update_layout(
        template=TEMPLATE,
        title={"text": title or "", "x": 0.5},
        scene=_scene(grid),
        margin=dict(l=0, r=0, t=40 if title else 10, b=0),
        uirevision="iso",
        meta={"level": None if drawn is None else round(float(drawn), 4)},
    )
    if mesh is None:
        why = "no preview stored" if volume is None else "no surface to draw"
        if drawn is not None and volume is not None:
            why += f" at level {drawn:.3g}"
        fig.add_annotation(**message_annotation(why))
    return fig


def matched_levels(
    volumes: Sequence[np.ndarray],
    level: float = ISO_LEVEL,
    reference: np.ndarray | None = None,
) -> list[float]:
    """Per volume, the level that encloses as many voxels as ``reference`` (default:
    the last volume) does at ``level``.

    Reconstructions from the coarse scales alone are blurred and fainter, so one
    fixed level shows them empty; matching the enclosed volume (as cryo-EM maps are
    compared) shows the shape each keeps instead. A reference with nothing above
    ``level`` leaves every level at ``level``.
    """
    if not len(volumes):
        return []
    ref = np.asarray(volumes[-1] if reference is None else reference, np.float32)
    inside = float(np.mean(ref > level))
    if inside <= 0.0 or inside >= 1.0:
        return [float(level)] * len(volumes)
    return [_level_inside(np.asarray(v, np.float32), inside) for v in volumes]


def _level_inside(volume: np.ndarray, inside: float) -> float:
    """The level enclosing the fraction ``inside`` of ``volume``; just above its
    floor when less than that is above the floor (a faint reconstruction clamped
    at 0 then shows all it has, rather than nothing)."""
    level = float(np.quantile(volume, 1.0 - inside))
    lo, hi = float(volume.min()), float(volume.max())
    return max(level, lo + 1e-3 * (hi - lo)) if hi > lo else level


def _c2f_grid(n: int) -> tuple[int, int]:
    """``(columns, rows)`` of the coarse-to-fine scenes: two to a row, three
    beyond four scales."""
    cols = n if n <= 2 else 2 if n <= 4 else 3
    return cols, -(-n // cols)


def coarse_to_fine_height(n: int) -> int:
    """The height of :func:`coarse_to_fine_figure`, for the page to reserve it.

    Args:
        n: number of scales.

    Returns:
        Pixels.
    """
    return 240 * _c2f_grid(max(n, 1))[1] + 52


def coarse_to_fine_figure(
    volumes: Sequence[np.ndarray],
    level: float = ISO_LEVEL,
    match_volume: bool = True,
    reference: np.ndarray | None = None,
    smooth: float = SMOOTH_SIGMA,
    titles: Sequence[str] | None = None,
) -> go.Figure:
    """An entry reconstructed from its first 1, 2, ... all scales: one 3D scene
    per reconstruction, two to a row (three beyond four scales), every scene
    showing the whole box (one common scale) from the same camera, titled "1
    scale", "2 scales", ... under the view (the toolbar stays clear of them). The
    app links the cameras, so turning one turns all.

    Args:
        volumes: ``[g, g, g]`` volumes in [0, 1], coarsest reconstruction first.
        level: isosurface level (of ``reference``, when volumes are matched; 0
            with a stored preview as reference: the volume the map's contour
            enclosed).
        match_volume: contour each (smoothed) volume at the level enclosing the
            same volume as ``reference`` at ``level`` (:func:`matched_levels`);
            else at ``level``.
        reference: the volume whose enclosed volume is matched (default: the
            last, all-scale reconstruction; the app passes the stored preview).
        smooth: Gaussian sigma in voxels applied before contouring.
        titles: one per volume, in place of "1 scale", "2 scales", ... (other
            sets of volumes shown the same way, e.g. variations).

    Returns:
        The figure; ``layout.meta["levels"]`` holds each scene's level.
    """
    n = len(volumes)
    if n == 0:
        fig = go.Figure()
        fig.update_layout(template=TEMPLATE)
        fig.add_annotation(**message_annotation("no reconstruction"))
        return fig
    shown = [smoothed(v, smooth) for v in volumes]
    levels = (
        matched_levels(shown, level, reference) if match_volume else [float(level)] * n
    )
    meshes = [_mesh(v, lv, "#e45756") for v, lv in zip(shown, levels, strict=True)]
    names = titles or [f"{s} scale{'s' if s > 1 else ''}" for s in range(1, n + 1)]
    titles = [
        name + ("" if m is not None else " (empty)")
        for name, m in zip(names, meshes, strict=True)
    ]
    cols, rows = _c2f_grid(n)
    specs = [
        [{"type": "scene"} if r * cols + c < n else None for c in range(cols)]
        for r in range(rows)
    ]
    fig = make_subplots(
        rows=rows,
        cols=cols,
        specs=specs,
        subplot_titles=titles,
        horizontal_spacing=0.04,
        vertical_spacing=0.12 if rows > 1 else 0.0,
    )
    for j, mesh in enumerate(meshes):
        if mesh is not None:
            fig.add_trace(mesh, row=j // cols + 1, col=j % cols + 1)
    grid = max(np.shape(volumes[-1]))
    scenes = {f"scene{'' if j == 0 else j + 1}": _scene(grid) for j in range(n)}
    fig.update_layout(
        template=TEMPLATE,
        margin=dict(l=0, r=0, t=28, b=24),
        height=coarse_to_fine_height(n),
        uirevision="c2f",
        meta={"levels": [round(lv, 4) for lv in levels]},
        **scenes,
    )
    for j, title in enumerate(fig.layout.annotations):  # under each scene
        bottom = fig.layout[f"scene{'' if j == 0 else j + 1}"].domain.y[0]
        title.update(y=bottom, yanchor="top", yshift=-2)
    return fig


def pair_figure(
    query: np.ndarray,
    hit: np.ndarray,
    spacing: float,
    query_level: float,
    hit_level: float,
    query_name: str = "query",
    hit_name: str = "hit",
    query_color: str = "#4c78a8",
    hit_color: str = "#f58518",
) -> go.Figure:
    """A query and a hit superposed in one 3D scene, in Å: two isosurfaces of
    volumes on one grid (:func:`swan_index.superpose.display_volumes`); the
    one enclosing more at its level is drawn see-through over the other.

    Args:
        query, hit: ``[n, n, n]`` densities on one grid (map units).
        spacing: Å per voxel of the grid.
        query_level, hit_level: their contour levels, map units.
        query_name, hit_name: legend entries.
        query_color, hit_color: surface colours.

    Returns:
        The figure (axes in Å about the grid's centre); ``layout.meta`` holds
        ``levels`` (query, hit) and ``drawn`` (which surfaces exist). A volume
        with no surface at its level is named in an annotation.
    """
    n = max(np.shape(hit))
    half = 0.5 * (n - 1) * spacing
    traces, missing = [], []
    # the one enclosing more is drawn see-through, so the other shows inside it
    hit_larger = np.sum(np.asarray(hit) > hit_level) >= np.sum(
        np.asarray(query) > query_level
    )
    for vol, level, color, name, opacity in (
        (query, query_level, query_color, query_name, 1.0 if hit_larger else 0.35),
        (hit, hit_level, hit_color, hit_name, 0.35 if hit_larger else 1.0),
    ):
        mesh = _mesh(vol, float(level), color)
        if mesh is None:
            missing.append(f"{name}: no surface at {level:.4g}")
            continue
        mesh.update(
            x=np.asarray(mesh.x) * spacing - half,
            y=np.asarray(mesh.y) * spacing - half,
            z=np.asarray(mesh.z) * spacing - half,
            name=name,
            showlegend=True,
            opacity=opacity,
        )
        traces.append(mesh)
    axis = dict(range=[-half, half], autorange=False, showbackground=False)
    fig = go.Figure(traces)
    fig.update_layout(
        template=TEMPLATE,
        scene=dict(
            aspectmode="cube",
            xaxis=dict(title="x (Å)", **axis),
            yaxis=dict(title="y (Å)", **axis),
            zaxis=dict(title="z (Å)", **axis),
            camera=dict(eye=dict(x=1.3, y=1.3, z=0.9)),
        ),
        margin=dict(l=0, r=0, t=10, b=0),
        legend=dict(orientation="h", y=1.0, x=0.0, bgcolor="rgba(255,255,255,0.6)"),
        uirevision="pair",
        meta={
            "levels": [round(float(query_level), 6), round(float(hit_level), 6)],
            "drawn": [t.name for t in traces],
        },
    )
    if missing:
        fig.add_annotation(**message_annotation("; ".join(missing)))
    return fig
