"""All atoms of a SYNTHETIC chain from its CA trace: backbone, CB, side chains."""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from encoder.training_data.geometry import perp, unit
from encoder.training_data.traces import SS_LOOP


def _nerf(
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    bond: float,
    angle: float,
    torsion: float,
) -> np.ndarray:
    """Atom d with |cd| = bond, angle bcd and torsion abcd (degrees)."""
    angle, torsion = math.radians(angle), math.radians(torsion)
    bc = unit(c - b)
    n = unit(np.cross(b - a, bc))
    return c + bond * (
        -math.cos(angle) * bc
        + math.sin(angle) * math.cos(torsion) * np.cross(n, bc)
        + math.sin(angle) * math.sin(torsion) * n
    )


def _peptide_table(phi: float, psi: float) -> np.ndarray:
    """C(i), O(i) (from CA(i)) and N(i+1) (from CA(i+1)) of an ideal regular
    backbone, in the frame of CA(i) -> CA(i+1) (u), CA(i-1) (y, ⊥ u), u x y."""
    n_at, ca, c, o = [np.zeros(3)], [np.array([1.458, 0.0, 0.0])], [], []
    c.append(ca[0] + 1.525 * np.array([-math.cos(1.9408), math.sin(1.9408), 0.0]))
    for i in range(4):
        n_at.append(_nerf(n_at[i], ca[i], c[i], 1.329, 116.2, psi))
        ca.append(_nerf(ca[i], c[i], n_at[i + 1], 1.458, 121.7, 180.0))
        c.append(_nerf(c[i], n_at[i + 1], ca[i + 1], 1.525, 111.2, phi))
        o.append(_nerf(n_at[i], ca[i], c[i], 1.231, 120.5, psi + 180.0))
    i = 2
    u = unit(ca[i + 1] - ca[i])
    y = perp(ca[i - 1] - ca[i], u)
    frame = np.stack([u, y, np.cross(u, y)])
    return np.stack(
        [
            frame @ (c[i] - ca[i]),
            frame @ (o[i] - ca[i]),
            frame @ (n_at[i + 1] - ca[i + 1]),
        ]
    )


CB_BOND = 1.53


def _cb_frame(n_at: np.ndarray, ca: np.ndarray, c_at: np.ndarray) -> np.ndarray:
    """Unit N-CA-C bisector, normal and in-plane axis (last axis: the three)."""
    b, c = unit(n_at - ca), unit(c_at - ca)
    bis = unit(b + c)
    normal = unit(np.cross(c, b))
    return np.stack([bis, normal, np.cross(bis, normal)], axis=-2)


def _cb_mix() -> np.ndarray:
    """Ideal CB direction in :func:`_cb_frame` terms (tetrahedral rule)."""
    n_at, ca = np.array([-1.458, 0.0, 0.0]), np.zeros(3)
    a = math.radians(180.0 - 111.2)
    c_at = 1.525 * np.array([math.cos(a), math.sin(a), 0.0])
    b, c = ca - n_at, c_at - ca
    cb = -0.58273431 * np.cross(b, c) + 0.56802827 * b - 0.54067466 * c
    return _cb_frame(n_at, ca, c_at) @ unit(cb)


_CB_MIX = _cb_mix()
#: Residues with at least this many CA within 10 Å of CA + 2.4 Å along CA->CB
#: point into their domain and get short side chains.
BURIED_NEIGHBOURS = 20

#: Peptide atoms (C, O, N) in the CA frame: ideal alpha helix, ideal beta strand.
_PEPTIDE = np.stack([_peptide_table(-57.8, -47.0), _peptide_table(-120.0, 130.0)])

RESIDUES = ("GLY", "ALA", "SER", "MET", "LYS")
ATOM_NAMES = {
    "GLY": ("N", "CA", "C", "O"),
    "ALA": ("N", "CA", "C", "O", "CB"),
    "SER": ("N", "CA", "C", "O", "CB", "OG"),
    "MET": ("N", "CA", "C", "O", "CB", "CG", "SD", "CE"),
    "LYS": ("N", "CA", "C", "O", "CB", "CG", "CD", "CE", "NZ"),
}
_N_ATOMS = np.array([len(ATOM_NAMES[r]) for r in RESIDUES])


def _backbone(ca: np.ndarray, ss: np.ndarray) -> tuple[np.ndarray, ...]:
    """N, C, O and CB of every residue from the CA trace.

    See :mod:`encoder.training_data.synthetic` for the geometry.
    """
    n = len(ca)
    v0 = ca[0] - (ca[2] - ca[1])
    ext = np.vstack([v0 - (ca[1] - ca[0]), v0, ca, ca[-1] + (ca[-2] - ca[-3])])
    here, nxt, prev = ext[1:-1], ext[2:], ext[:-2]  # peptide k: here[k] -> nxt[k]
    u = unit(nxt - here)
    y = perp(prev - here, u)
    z = np.cross(u, y)
    label = ss[np.clip(np.arange(n + 1) - 1, 0, n - 1)]
    cos_angle = (unit(prev - here) * u).sum(1)
    loop_type = np.where(cos_angle > math.cos(math.radians(105.0)), 0, 1)
    table = _PEPTIDE[np.where(label == SS_LOOP, loop_type, label)]  # (n+1, 3, 3)

    def put(origin: np.ndarray, row: int) -> np.ndarray:
        t = table[:, row]
        return origin + t[:, :1] * u + t[:, 1:2] * y + t[:, 2:] * z

    n_at, c_at, o_at = put(nxt, 2)[:n], put(here, 0)[1:], put(here, 1)[1:]
    return n_at, c_at, o_at, _cb(n_at, ca, c_at)


def _cb(n_at: np.ndarray, ca: np.ndarray, c_at: np.ndarray) -> np.ndarray:
    """Ideal CB (L-amino acid): fixed mix of the N-CA-C bisector and normal."""
    frame = _cb_frame(n_at, ca, c_at)  # (n, 3 axes, xyz)
    return ca + CB_BOND * np.einsum("a,nax->nx", _CB_MIX, frame)


def residue_atoms(
    ca: np.ndarray, ss: np.ndarray, side_chains: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Residue types and all atom coordinates of a chain from its CA trace.

    Args:
        ca: CA coordinates ``[N, 3]``.
        ss: secondary-structure codes ``[N]`` (``SS_HELIX``, ``SS_STRAND``,
            ``SS_LOOP`` of :mod:`encoder.training_data.traces`).
        side_chains: add pseudo side chains (SER, MET, LYS); else ALA and GLY.
        rng: random stream of the residue types.

    Returns:
        ``(kind, xyz)``: residue types ``[N]`` (indices into ``RESIDUES``) and atom
        coordinates ``[A, 3]`` in residue order, each residue's atoms as in
        ``ATOM_NAMES``.
    """
    n_at, c_at, o_at, cb = _backbone(ca, ss)
    d = unit(cb - ca)
    p = perp(ca - n_at, d)
    axis = (1.25 * d - 0.88 * p) / 1.53  # zigzag CA-CB-CG-... (1.53 Å, ~110°)
    side = (0.88 * d + 1.25 * p) / 1.53
    k = np.arange(2, 6)[None, :, None]
    extra = ca[:, None] + 1.25 * k * axis[:, None] + 0.88 * (k % 2) * side[:, None]
    slots = np.concatenate(
        [np.stack([n_at, ca, c_at, o_at, cb], axis=1), extra], axis=1
    )  # (n, 9, 3)
    gly = rng.random(len(ca)) < np.where(ss == SS_LOOP, 0.2, 0.04)
    if side_chains:
        count = cKDTree(ca).query_ball_point(ca + 2.4 * d, 10.0, return_length=True)
        buried = count >= BURIED_NEIGHBOURS
        inner = rng.choice([1, 2, 3], size=len(ca), p=[0.55, 0.3, 0.15])
        outer = rng.choice([4, 2, 1, 3], size=len(ca), p=[0.35, 0.25, 0.2, 0.2])
        kind = np.where(buried, inner, outer)
    else:
        kind = np.ones(len(ca), dtype=int)
    kind = np.where(gly, 0, kind)
    mask = np.arange(9)[None] < _N_ATOMS[kind][:, None]
    return kind, slots[mask]
