"""CA traces of SYNTHETIC domains: helices, strands, and the loops between them.

Elements sit on a lattice (:func:`element_layout`); loops and tails start as arcs
(:func:`loop_arc`, :func:`tail_path`) and are relaxed together (:class:`Paths`) until
they meet the loop geometry described in :mod:`encoder.training_data.synthetic`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from encoder.training_data.geometry import unit
from encoder.training_data.spec import DomainPlan

CA_CA = 3.8
HELIX_RADIUS = 2.3
HELIX_RISE = 1.5
HELIX_TURN = math.radians(100.0)  # 3.6 residues per turn
STRAND_RISE = 3.3
STRAND_PLEAT = 0.5 * math.sqrt(CA_CA**2 - STRAND_RISE**2)  # 0.94 Å
STRAND_SPACING = 4.8
HELIX_SPACING = 10.0
LAYER_SPACING = 10.0
#: Loops: smallest CA(i)-CA(i+2) (virtual angle ~82°) and other CA-CA distance.
MIN_I2 = 5.0
MIN_NONBONDED = 4.3
#: Secondary-structure codes of a trace's residues.
SS_HELIX, SS_STRAND, SS_LOOP = 0, 1, 2


@dataclass
class Element:
    """A helix (``"H"``) or strand (``"E"``) on its axis (unit, chain direction)."""

    kind: str
    center: np.ndarray
    axis: np.ndarray
    ref: np.ndarray  # helix phase reference / strand pleat direction (unit, ⊥ axis)
    length: int
    phase: float = 0.0

    def ca(self) -> np.ndarray:
        """CA coordinates ``[length, 3]`` along the element, N to C."""
        j = np.arange(self.length, dtype=np.float64)
        if self.kind == "H":
            e2 = np.cross(self.axis, self.ref)
            theta = self.phase + HELIX_TURN * j
            s = (j - (self.length - 1) / 2.0) * HELIX_RISE
            return (
                self.center
                + HELIX_RADIUS
                * (np.cos(theta)[:, None] * self.ref + np.sin(theta)[:, None] * e2)
                + s[:, None] * self.axis
            )
        # strands sit on a common grid along the axis so pleats of neighbours match
        g = j - (self.length - 1) // 2
        sign = np.where(g.astype(int) % 2 == 0, 1.0, -1.0)
        return (
            self.center
            + (g * STRAND_RISE)[:, None] * self.axis
            + (sign * STRAND_PLEAT)[:, None] * self.ref
        )


def element_layout(plan: DomainPlan) -> list[tuple[str, float, float]]:
    """Element kinds in chain order with lattice positions (x, y), axes along z."""
    n_h, n_e, arch = plan.n_helices, plan.n_strands, plan.architecture
    out: list[tuple[str, float, float]] = []
    if arch == "alpha":
        out = _hex_block(n_h)
    elif arch == "beta":
        k_a = n_e if n_e <= 3 else math.ceil(n_e / 2)
        out += [("E", i * STRAND_SPACING, 0.0) for i in range(k_a)]
        out += [
            ("E", (k_a - 1 - i) * STRAND_SPACING, LAYER_SPACING)
            for i in range(n_e - k_a)
        ]
    elif arch == "alpha/beta":
        for j in range(n_e):
            out.append(("E", j * STRAND_SPACING, 0.0))
            if j < n_h:
                side = LAYER_SPACING if j % 2 == 0 else -LAYER_SPACING
                out.append(("H", (j + 0.5) * STRAND_SPACING, side))
    else:  # alpha+beta: a meander sheet, then a helix block beside it
        out += [("E", i * STRAND_SPACING, 0.0) for i in range(n_e)]
        block = _hex_block(n_h)
        x_mid = 0.5 * (n_e - 1) * STRAND_SPACING
        x_block = 0.5 * max(x for _, x, _ in block)
        # mirrored so that the block starts next to the last strand
        out += [("H", x_mid + x_block - x, LAYER_SPACING + y) for _, x, y in block]
    return out


def _hex_block(n: int) -> list[tuple[str, float, float]]:
    """``n`` helices on a hexagonal lattice (10 Å), rows snaking, first at y = 0."""
    cols = math.ceil(math.sqrt(n))
    out = []
    for r in range(math.ceil(n / cols)):
        k = min(cols, n - r * cols)
        xs = (np.arange(k) + (cols - k) // 2 + 0.5 * (r % 2)) * HELIX_SPACING
        for x in xs[::-1] if r % 2 else xs:
            out.append(("H", float(x), r * HELIX_SPACING * math.sqrt(3) / 2))
    return out


def loop_min(d: float) -> int:
    """Fewest loop residues to bridge ``d`` Å comfortably (at least 2)."""
    return max(2, math.ceil(d / (0.7 * CA_CA)) - 1)


def _relax(
    x: np.ndarray,
    fixed: np.ndarray,
    path_id: np.ndarray,
    static: np.ndarray,
    max_iters: int = 400,
) -> np.ndarray:
    """Move the free points of several CA paths to meet the loop geometry.

    ``x`` holds the paths one after another (rows of a path consecutive, in chain
    order, labelled by ``path_id``); ``fixed`` marks their anchors. Constraints:
    consecutive CAs of a path 3.8 Å apart; CA(i)-CA(i+2) >= ``MIN_I2``; all other
    pairs and every ``static`` point >= ``MIN_NONBONDED``. Each sweep pushes
    violating pairs apart (Jacobi, damped) and projects the bonds (red-black), until
    nothing is off by more than 0.05 Å.
    """
    x = x.copy()
    w = (~fixed).astype(np.float64)
    pos = np.arange(len(x))
    b = np.flatnonzero((path_id[:-1] == path_id[1:]) & (w[:-1] + w[1:] > 0))
    sweeps = []
    for s in (b[b % 2 == 0], b[b % 2 == 1]):
        tot = w[s] + w[s + 1]
        sweeps.append((s, (w[s] / tot)[:, None], (w[s + 1] / tot)[:, None]))
    free = np.flatnonzero(~fixed)
    tree = cKDTree(static) if len(static) else None
    fi = sj = np.zeros(0, dtype=int)
    reach = MIN_NONBONDED + 4.0
    for it in range(max_iters):
        if it % 10 == 0:  # neighbour lists
            i, j = cKDTree(x).query_pairs(reach, output_type="ndarray").T
            sep = np.where(path_id[i] == path_id[j], np.abs(pos[j] - pos[i]), 99)
            keep = (sep >= 2) & (w[i] + w[j] > 0)
            i, j = i[keep], j[keep]
            dmin = np.where(sep[keep] == 2, MIN_I2, MIN_NONBONDED)
            wi = (w[i] / (w[i] + w[j]))[:, None]
            wj = (w[j] / (w[i] + w[j]))[:, None]
            if tree is not None:
                near = cKDTree(x[free]).sparse_distance_matrix(
                    tree, reach, output_type="ndarray"
                )
                fi, sj = free[near["i"]], near["j"]
        delta = np.zeros_like(x)
        d = x[j] - x[i]
        length = np.sqrt(np.einsum("ij,ij->i", d, d))
        gap = length - dmin
        worst = float(gap.min()) if len(gap) else 0.0
        v = gap < 0.0
        if v.any():
            c = ((0.05 - gap[v]) / np.maximum(length[v], 1e-9))[:, None] * d[v]
            np.add.at(delta, i[v], -c * wi[v])
            np.add.at(delta, j[v], c * wj[v])
        if len(fi):
            d = x[fi] - static[sj]
            length = np.sqrt(np.einsum("ij,ij->i", d, d))
            gap = length - MIN_NONBONDED
            worst = min(worst, float(gap.min()))
            v = gap < 0.0
            if v.any():
                c = ((0.05 - gap[v]) / np.maximum(length[v], 1e-9))[:, None] * d[v]
                np.add.at(delta, fi[v], c)
        if worst > -0.05 and it > 0:
            break
        x += 0.5 * delta
        _restore_steps(x, sweeps, 2)
    _restore_steps(x, sweeps, 10)
    return x


def _restore_steps(x: np.ndarray, sweeps: list, rounds: int) -> None:
    """Pull consecutive CAs back to CA_CA apart, in place (``rounds`` sweeps)."""
    for _ in range(rounds):
        for s, ws, wt in sweeps:
            d = x[s + 1] - x[s]
            length = np.sqrt(np.einsum("ij,ij->i", d, d))[:, None]
            c = (length - CA_CA) / np.maximum(length, 1e-9) * d
            x[s] += ws * c
            x[s + 1] -= wt * c


def loop_arc(
    a1: np.ndarray,
    da: np.ndarray,
    b1: np.ndarray,
    db: np.ndarray,
    m: int,
    out: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Initial loop of ``m`` CAs from ``a1`` to ``b1``, bulging along ``da + db``
    (the directions leaving ``a1`` and ``b1``; ``out`` if they cancel) so that its
    length is 85 % of the 3.8 Å steps."""
    t = np.arange(1, m + 1) / (m + 1)
    u = unit(da) + unit(db)
    u = unit(u) if np.linalg.norm(u) > 0.3 else out
    target = 0.85 * (m + 1) * CA_CA
    h = np.linspace(0.0, target, 40)
    pts = a1 + t[:, None] * (b1 - a1) + np.sin(np.pi * t)[:, None] * u  # h = 1
    pts = (
        a1
        + (pts - a1)[None]
        + (h[:, None, None] - 1.0) * (np.sin(np.pi * t)[:, None] * u)
    )
    full = np.concatenate(
        [np.broadcast_to(a1, (40, 1, 3)), pts, np.broadcast_to(b1, (40, 1, 3))], 1
    )
    length = np.linalg.norm(np.diff(full, axis=1), axis=2).sum(1)
    best = float(np.interp(target, length, h))
    base = a1 + t[:, None] * (b1 - a1) + (best * np.sin(np.pi * t))[:, None] * u
    return base + rng.normal(0.0, 0.8, base.shape)


def tail_path(
    a2: np.ndarray,
    a1: np.ndarray,
    n: int,
    center: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Initial free tail of ``n`` CAs leaving ``a1`` away from ``a2`` and ``center``."""
    u = unit(unit(a1 - a2) + unit(a1 - center))
    k = np.arange(1, n + 1)[:, None]
    return a1 + 3.3 * k * u + rng.normal(0.0, 1.0, (n, 3))


class Paths:
    """Loops and tails to relax together: anchors (fixed) around free CAs."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.fixed: list[np.ndarray] = []
        self.spans: list[tuple[int, int]] = []
        self.n = 0

    def add(self, head: np.ndarray, inner: np.ndarray, tail: np.ndarray) -> None:
        """A path ``head`` (fixed), ``inner`` (free), ``tail`` (fixed), N to C."""
        rows = np.vstack([head.reshape(-1, 3), inner, tail.reshape(-1, 3)])
        fixed = np.ones(len(rows), dtype=bool)
        fixed[len(head) : len(head) + len(inner)] = False
        start = self.n + len(head)
        self.spans.append((start, start + len(inner)))
        self.rows.append(rows)
        self.fixed.append(fixed)
        self.n += len(rows)

    def relax(self, static: np.ndarray) -> list[np.ndarray]:
        """The free CAs of every path after :func:`_relax`, in the order added."""
        if not self.rows:
            return []
        path_id = np.concatenate([np.full(len(r), k) for k, r in enumerate(self.rows)])
        x = _relax(np.vstack(self.rows), np.concatenate(self.fixed), path_id, static)
        return [x[a:b] for a, b in self.spans]
