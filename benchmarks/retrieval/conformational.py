"""The ``"conformational"`` condition: part of a model turned about a hinge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gemmi
import numpy as np
from scipy.spatial import cKDTree

from benchmarks.retrieval.residues import polymer_residues, residue_table
from ingest.simulate import model_atoms
from ingest.transform import axis_rotation

#: Hinge angle of the "conformational" condition, degrees.
HINGE_ANGLE = (15.0, 40.0)

_CONTACT = 8.0  # residue contact distance for the domain split, Å
_CLASH = 3.6  # representative atoms closer than this clash, Å


@dataclass(frozen=True, eq=False)
class HingeMotion:
    """A rigid motion of one part of a model about a hinge.

    Attributes:
        moved: bool per atom (``model_atoms`` order), True for the moved part.
        transform: 4x4 rigid transform applied to the moved atoms (Å).
        angle: rotation angle, degrees.
        pivot: hinge point on the rotation axis, Å.
        axis: unit rotation axis.
        mode: ``"domain"`` (part of one chain, split at a hinge residue) or
            ``"subunits"`` (a group of chains against the rest).
        moved_fraction: share of the atoms moved.
        clashes: representative atoms (CA/P) of the moved part within 3.6 Å of the
            static part after the move that were not before.
        detail: which part moved (JSON-serialisable).
    """

    moved: np.ndarray
    transform: np.ndarray
    angle: float
    pivot: np.ndarray
    axis: np.ndarray
    mode: str
    moved_fraction: float
    clashes: int
    detail: dict[str, Any]

    def apply(self, xyz: np.ndarray) -> np.ndarray:
        """Coordinates (N, 3) after the motion: moved rows transformed, others kept."""
        out = np.array(xyz, dtype=np.float64, copy=True)
        t = self.transform
        out[self.moved] = out[self.moved] @ t[:3, :3].T + t[:3, 3]
        return out


def _perpendicular_axes(d: np.ndarray, n: int) -> list[np.ndarray]:
    helper = np.eye(3)[int(np.argmin(np.abs(d)))]
    e1 = np.cross(d, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(d, e1)
    return [
        np.cos(a) * e1 + np.sin(a) * e2 for a in np.linspace(0, 2 * np.pi, n, False)
    ]


def _domain_split(rep: np.ndarray) -> int:
    """Index k splitting a chain's residues into [0, k) and [k, n) with the fewest
    contacts between the parts relative to those within (k in 30-70 % of n)."""
    n = len(rep)
    contacts = (cKDTree(rep).sparse_distance_matrix(cKDTree(rep), _CONTACT)).toarray()
    m = (contacts > 0).astype(np.float64)
    prefix = np.zeros((n + 1, n + 1))
    prefix[1:, 1:] = m.cumsum(0).cumsum(1)

    def block(a: int, b: int, c: int, d: int) -> float:  # sum m[a:b, c:d]
        return prefix[b, d] - prefix[a, d] - prefix[b, c] + prefix[a, c]

    best, best_k = np.inf, n // 2
    for k in range(max(2, int(0.3 * n)), min(n - 1, int(0.7 * n)) + 1):
        inter = block(0, k, k, n)
        intra = np.sqrt(max(block(0, k, 0, k), 1.0) * max(block(k, n, k, n), 1.0))
        score = inter / intra
        if score < best:
            best, best_k = score, k
    return best_k


def hinge_transform(
    structure: gemmi.Structure,
    rng: np.random.Generator,
    angle: float | None = None,
    mode: str | None = None,
) -> HingeMotion:
    """Choose a domain motion: a part of the model rotated about a hinge.

    ``"domain"``: in the chain with the most polymer residues, the split residue is
    where the two sides have the fewest contacts relative to their internal ones
    (a simple domain parser, searched in 30-70 % of the chain); the smaller side
    turns about an axis through that residue's CA (so the chain stays connected).
    ``"subunits"`` (multi-chain): the chains on one side of the plane through the
    assembly's centre across its longest axis turn as one body about an axis
    through their interface (at its centre or one of its edges). In both, the axis
    is perpendicular to the line from the hinge to the moved part's centre (an
    opening/closing or twisting swing, not a scramble); of 12 axis directions (and
    3 pivots for subunits), the one with the fewest new CA clashes is taken.

    Args:
        structure: the model.
        rng: randomness.
        angle: degrees; default drawn from :data:`HINGE_ANGLE`.
        mode: ``"domain"`` or ``"subunits"``; default ``"domain"`` for one chain,
            either (at random) for several.

    Returns:
        The :class:`HingeMotion` (apply it with :func:`apply_motion`).

    Raises:
        ValueError: unknown mode, or ``"subunits"`` on a one-chain model.
    """
    table = residue_table(structure)
    theta = float(angle if angle is not None else rng.uniform(*HINGE_ANGLE))
    chains_with_atoms = sorted(set(table.res_chain.tolist()))
    multi = len(chains_with_atoms) > 1
    if mode is None:
        mode = str(rng.choice(["domain", "subunits"])) if multi else "domain"
    if mode not in ("domain", "subunits"):
        raise ValueError(f"mode {mode!r} is unknown; use domain or subunits")
    if mode == "subunits" and not multi:
        raise ValueError("subunits mode needs a model with several chains")
    rep = table.res_rep
    detail: dict[str, Any] = {}
    if mode == "domain":
        sizes = [len(polymer_residues(table, c)) for c in range(len(table.chain_names))]
        c = int(np.argmax(sizes))
        idx = polymer_residues(table, c)
        if len(idx) < 8:
            raise ValueError("no chain is long enough for a domain motion")
        k = _domain_split(rep[idx])
        first, second = idx[:k], idx[k:]
        moved_res = second if len(second) <= len(first) else first
        hinge_res = idx[k] if moved_res is second else idx[k - 1]
        pivots = [rep[hinge_res]]
        detail = {
            "chain": table.chain_names[c],
            "hinge_residue": table.res_label[hinge_res],
            "moved_residues": [
                table.res_label[moved_res[0]],
                table.res_label[moved_res[-1]],
            ],
            "moved_side": "C-terminal" if moved_res is second else "N-terminal",
        }
        moved_r = np.zeros(len(rep), dtype=bool)
        moved_r[moved_res] = True
    else:
        centers = np.array(
            [
                table.xyz[table.res_chain[table.atom_residue] == c].mean(0)
                for c in chains_with_atoms
            ]
        )
        center = centers.mean(0)
        _, _, vt = np.linalg.svd(centers - center, full_matrices=False)
        proj = (centers - center) @ vt[0]
        order = np.argsort(proj)
        n_move = max(1, len(order) // 2)
        moving = sorted(chains_with_atoms[i] for i in order[len(order) - n_move :])
        moved_r = np.isin(table.res_chain, moving)
        static_tree = cKDTree(rep[~moved_r])
        near = static_tree.query(rep[moved_r], distance_upper_bound=_CONTACT)[0]
        interface = rep[moved_r][np.isfinite(near)]
        if len(interface) == 0:  # parts not in contact: the nearest moved atoms
            interface = rep[moved_r][np.argsort(near)[:5]]
        pivots = [interface.mean(0)]
        detail = {"chains": [table.chain_names[c] for c in moving]}
    moved_atoms = moved_r[table.atom_residue]
    static_rep = rep[~moved_r]
    static_tree = cKDTree(static_rep) if len(static_rep) else None
    moving_rep = rep[moved_r]
    before = _clash_pairs(static_tree, moving_rep)
    target = moving_rep.mean(0)
    candidates = []
    for p0 in pivots:
        d = target - p0
        d = d / max(np.linalg.norm(d), 1e-9)
        for axis in _perpendicular_axes(d, 12):
            pivs = [p0]
            if mode == "subunits":  # also the interface edges across the swing
                e = np.cross(axis, d)
                s = (interface - p0) @ e
                pivs += [interface[np.argmin(s)], interface[np.argmax(s)]]
            for p in pivs:
                rot = axis_rotation(axis, np.radians(theta))
                moved = (moving_rep - p) @ rot.T + p
                clashes = len(_clash_pairs(static_tree, moved) - before)
                candidates.append((clashes, axis, np.asarray(p, dtype=np.float64)))
    fewest = min(c[0] for c in candidates)
    best = [c for c in candidates if c[0] == fewest]
    clashes, axis, pivot = best[int(rng.integers(len(best)))]
    rot = axis_rotation(axis, np.radians(theta))
    transform = np.eye(4)
    transform[:3, :3] = rot
    transform[:3, 3] = pivot - rot @ pivot
    return HingeMotion(
        moved=moved_atoms,
        transform=transform,
        angle=theta,
        pivot=pivot,
        axis=np.asarray(axis, dtype=np.float64),
        mode=mode,
        moved_fraction=float(moved_atoms.mean()),
        clashes=int(clashes),
        detail=detail,
    )


def _clash_pairs(tree: cKDTree | None, points: np.ndarray) -> set[tuple[int, int]]:
    if tree is None or len(points) == 0:
        return set()
    hits = cKDTree(points).query_ball_tree(tree, _CLASH)
    return {(i, j) for i, js in enumerate(hits) for j in js}


def apply_motion(structure: gemmi.Structure, motion: HingeMotion) -> gemmi.Structure:
    """A copy of ``structure`` with the moved part transformed (others unchanged)."""
    out = structure.clone()
    xyz = motion.apply(model_atoms(structure)[0])
    i = 0
    for chain in out[0]:
        for residue in chain:
            for atom in residue:
                if motion.moved[i]:
                    atom.pos = gemmi.Position(*xyz[i])
                i += 1
    return out
