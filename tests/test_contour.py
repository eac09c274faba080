"""Connected pieces and dust removal (ingest.contour.find_molecule): the graph of a
sparse mask's voxels gives the same pieces as labelling its bounding box."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ingest import DensityMap, contour
from ingest.contour import _sparse_pieces, find_molecule
from ingest.errors import MapFormatError


def _same_partition(mask: np.ndarray) -> None:
    """``_sparse_pieces`` splits ``mask`` exactly as ``ndimage.label`` does."""
    flat, piece = _sparse_pieces(mask)
    labels, n = ndimage.label(mask)
    assert np.array_equal(flat, np.flatnonzero(mask))
    assert len(np.unique(piece)) == n
    pairs = np.unique(np.stack([piece, labels.reshape(-1)[flat]]), axis=1)
    assert pairs.shape[1] == n  # one label per piece and one piece per label


@pytest.mark.parametrize("shape", [(9, 7, 5), (1, 6, 8), (12, 1, 3), (4, 4, 1)])
@pytest.mark.parametrize("fill", [0.05, 0.3, 0.6])
def test_sparse_pieces_match_ndimage_label(shape, fill):
    rng = np.random.default_rng(int(fill * 100) + sum(shape))
    _same_partition(rng.random(shape) < fill)


def test_sparse_pieces_do_not_join_across_row_and_plane_ends():
    mask = np.zeros((3, 3, 4), dtype=bool)
    mask[0, 0, 3] = mask[0, 1, 0] = True  # consecutive flat indices, rows apart
    mask[0, 2, 2] = mask[1, 0, 2] = True  # a row apart in flat index, planes apart
    mask[2, 2, 3] = True  # the last voxel: no +x, +y or +z neighbour
    flat, piece = _sparse_pieces(mask)
    assert len(set(piece.tolist())) == 5
    _same_partition(mask)


def _noisy_blob(rng: np.random.Generator, n: int = 48) -> DensityMap:
    """A ball of density with noise specks all over the box (a simulated map)."""
    z, y, x = np.mgrid[:n, :n, :n]
    ball = np.exp(-((x - 20) ** 2 + (y - 26) ** 2 + (z - 22) ** 2) / 40.0)
    data = (ball + rng.normal(scale=0.08, size=ball.shape)).astype(np.float32)
    return DensityMap(data, (1.2, 1.2, 1.2), (0.0, 0.0, 0.0), "simulated", "")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_find_molecule_is_the_same_by_graph_and_by_labels(monkeypatch, seed):
    dmap = _noisy_blob(np.random.default_rng(seed))
    level = 0.3
    assert 0 < np.mean(dmap.data >= level) < 1 / 64  # the graph's side by default
    by_graph = find_molecule(dmap, level, "user")
    monkeypatch.setattr(contour, "SPARSE_FRACTION", 0.0)
    by_labels = find_molecule(dmap, level, "user")
    assert by_graph.start == by_labels.start
    assert np.array_equal(by_graph.mask, by_labels.mask)
    # the specks are dust: the molecule is the ball, not the whole box
    assert max(by_graph.mask.shape) < 30
    labels, n = ndimage.label(dmap.data >= level)
    assert n > 10
    sizes = np.bincount(labels.reshape(-1))[1:]
    kept = sizes >= contour.DUST_FRACTION * sizes.max()
    assert by_graph.mask.sum() == sizes[kept].sum()


def test_pure_noise_has_no_molecule_by_either_path(monkeypatch):
    rng = np.random.default_rng(3)
    data = rng.normal(size=(40, 40, 40)).astype(np.float32)
    dmap = DensityMap(data, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), "noise.map", "")
    for fraction in (1.0, 0.0):
        monkeypatch.setattr(contour, "SPARSE_FRACTION", fraction)
        with pytest.raises(MapFormatError, match="holds no molecule"):
            find_molecule(dmap, 3.5, "user")
