"""How a stored preview is drawn (dashboard/preview.py): the shipped EMD-21457,
which broke into fragments at a fixed level, is drawn whole; a scattered volume
is joined by lowering its level, a few large parts are left apart and counted,
and specks are left out."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from dashboard.figures3d import ISO_LEVEL
from dashboard.pages.entry import preview_figure
from dashboard.preview import ONE_PIECE, largest_share, preview_view
from ingest import find_entries
from swan_index.prepare import prepare_entry

from .conftest import DATA

GRID = 32


def _parts(mask: np.ndarray) -> int:
    return int(ndimage.label(mask, structure=np.ones((3, 3, 3)))[1])


@pytest.fixture(scope="module")
def previews() -> dict[str, np.ndarray]:
    """The stored previews of the shipped maps, by EMDB id."""
    out = {}
    for entry in find_entries(DATA / "maps"):
        prepared = prepare_entry(entry, 64)
        out[prepared.record.emdb_id] = prepared.preview()
    return out


def test_emd_21457_is_drawn_whole(previews):
    preview = previews["EMD-21457"]
    # what a fixed level drew: dozens of fragments
    assert _parts(preview > ISO_LEVEL) > 20
    view = preview_view(preview)
    drawn = view.volume > view.level
    assert largest_share(drawn) > 0.99 and view.parts == 1
    # at the volume the map's contour encloses (no lowering needed)
    assert view.enclosed == 1.0
    assert abs(drawn.mean() / (preview > 0).mean() - 1) < 0.1


def test_a_membrane_cut_by_its_box_is_drawn_as_it_is_and_said(previews):
    preview = previews["EMD-3197"]
    view = preview_view(preview)
    assert view.enclosed == 1.0 and view.parts == 2  # the two layers
    title = preview_figure(preview, "EMD-3197", cut=True).layout.title.text
    assert "box cuts the molecule" in title and "2 separate parts" in title


def _beads() -> np.ndarray:
    """A ring of beads 3.5 voxels apart, 0 below the contour (0.5): apart at the
    contour's volume, joined a little below it."""
    z, y, x = np.mgrid[:GRID, :GRID, :GRID].astype(np.float64)
    volume = np.zeros((GRID, GRID, GRID))
    c = (GRID - 1) / 2
    for t in np.linspace(0, 2 * np.pi, int(2 * np.pi * 9 / 3.5), endpoint=False):
        bx, by = c + 9 * np.cos(t), c + 9 * np.sin(t)
        volume += np.exp(-((x - bx) ** 2 + (y - by) ** 2 + (z - c) ** 2) / 2)
    volume /= volume.max()
    return np.where(volume > 0.5, volume, 0.0).astype(np.float32)


def test_a_scattered_volume_is_joined_by_a_lower_level():
    volume = _beads()
    assert largest_share(volume > 0) < ONE_PIECE
    view = preview_view(volume)
    assert largest_share(view.volume > view.level) >= ONE_PIECE
    assert view.enclosed > 1.0
    title = preview_figure(volume, "entry 9").layout.title.text
    assert "contour lowered to join it" in title and "×" in title


def test_specks_are_left_out():
    volume = np.zeros((GRID, GRID, GRID), np.float32)
    volume[8:24, 8:24, 8:24] = 0.8  # the molecule
    volume[2, 2, 2] = 0.9  # a speck in a corner
    view = preview_view(volume)
    assert view.specks == 1 and view.parts == 1
    assert view.volume[2, 2, 2] == 0 and view.volume[16, 16, 16] > view.level


def test_no_preview_is_an_empty_figure():
    fig = preview_figure(None, "entry 1")
    assert len(fig.data) == 0
