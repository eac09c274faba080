"""SYNTHETIC protein-like assemblies: training data for the density-map autoencoder.

Everything this module makes is **synthetic**, not an experimental or predicted
model: the structure name starts with ``"SYNTHETIC"`` and its title
(``structure.info["_struct.title"]``) is the :func:`describe` label. Density maps
simulated from them (``ingest.simulate_map``) are flagged ``simulated`` as usual.

Geometry (an ideal-geometry approximation, not a refined model):

* **CA traces.** Alpha helices are ideal: 3.6 residues per turn, 1.5 Å rise per
  residue, CA radius 2.3 Å (CA(i)-CA(i+1) 3.83 Å, CA(i)-CA(i+3) 5.05 Å). Strands
  are straight with 3.3 Å rise and a 0.94 Å pleat along the sheet normal (so
  CA-CA is exactly 3.8 Å), paired in sheets 4.8 Å apart, residues in register.
  Loops, termini and inter-domain linkers are CA paths with 3.8 Å steps, started
  on an outward arc with random wiggle and relaxed (a few dozen vectorised
  constraint sweeps) until the virtual angle is at least ~82° (CA(i)-CA(i+2) >=
  5.0 Å) and every other CA is at least 4.3 Å away.
* **Backbone atoms.** Each peptide (C, O of residue i and N of residue i+1) is the
  ideal trans peptide (N-CA 1.458, CA-C 1.525, C-N 1.329, C=O 1.231 Å) in the
  orientation about the CA(i)-CA(i+1) line that an ideal alpha helix (phi -57.8,
  psi -47) or beta strand (phi -120, psi 130) built with those bond lengths and
  angles has (helix O(i)-N(i+4) comes out at 2.97 Å); loop peptides take the helix
  or the strand orientation from their CA virtual angle, so loop N-CA-C angles are
  only roughly ideal (~116-120°). CB comes from N, CA, C by the ideal tetrahedral
  rule. Helices are listed in ``structure.helices``.
* **Residues.** GLY (more often in loops) and, with ``side_chains``, ALA, SER, MET
  and LYS whose side chains are ideal zigzags (1.53 Å, ~110°) along CA-CB; the
  residues pointing into their domain (``BURIED_NEIGHBOURS``) are the short ones.
  Without side chains, ALA and GLY only. Only CAs are kept clash-free: side chains
  are not packed and may overlap other atoms (harmless for density at 4-10 Å).
* **Domains** (2-12 elements, all axes along one direction, alternating up and
  down, consecutive elements adjacent so loops are short): ``"alpha"`` helix
  bundles on a hexagonal lattice 10 Å apart; ``"beta"`` one antiparallel sheet
  (up to 3 strands) or a two-sheet sandwich 10 Å apart; ``"alpha/beta"`` a
  parallel sheet between two helix layers 10 Å away (strand, helix, strand, ...);
  ``"alpha+beta"`` an antiparallel sheet with helix layers on one side. Helices
  get a small random tilt and shift (reduced if they would clash); element
  lengths are balanced so the domain is about as tall as it is wide, which keeps
  the radius of gyration near the empirical 2.2 N^0.38 Å.
* **Assemblies.** A chain is its domains joined by linkers: each domain is put
  against the ones before, along a direction and at a rotation that keep the
  linker short and clear, at the smallest shift (bisection) that keeps every CA
  ``CONTACT`` (5 Å) from theirs. Hetero chains are packed the same way. Symmetric
  copies are rigid images of one chain at the smallest radius (then ring
  separation for Dn) that keeps all copies ``CONTACT`` apart; a helical assembly
  without a given rise takes, over rises on a 1 Å grid, the one whose smallest
  clash-free radius gives the least volume per subunit. Frames:
  ``"cyclic"``: axis z; ``"dihedral"``: axis z and a two-fold along x;
  ``"helical"``: axis z, chain k+1 is chain k turned by ``twist`` about z and
  raised by ``rise``; ``"monomer"``/``"hetero"``: centred at the origin.

Everything random derives from ``AssemblySpec.seed``, so a spec always builds the
same coordinates.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass, replace

import gemmi
import numpy as np
from scipy.spatial import cKDTree

from ingest.transform import axis_rotation

KINDS = ("monomer", "cyclic", "dihedral", "helical", "hetero")
ARCHITECTURES = ("alpha", "beta", "alpha/beta", "alpha+beta")
#: Allowed ``order`` per kind (random_spec draws from narrower ranges).
ORDER_RANGE = {
    "monomer": (1, 1),
    "cyclic": (2, 24),
    "dihedral": (2, 12),
    "helical": (2, 60),
    "hetero": (2, 6),
}
SYNTHETIC_PREFIX = "SYNTHETIC"

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
#: Smallest CA-CA distance between rigid bodies (domains, subunits), Å.
CONTACT = 5.0
#: Largest all-beta domain (12 strands of at most 14 residues and their loops).
MAX_BETA_RESIDUES = 240
#: Upper bound on heavy atoms per residue, used for size caps.
ATOMS_PER_RESIDUE = {True: 7.0, False: 5.0}

_HELIX_LEN = (6, 36)
_STRAND_LEN = (4, 14)
_SS_HELIX, _SS_STRAND, _SS_LOOP = 0, 1, 2


@dataclass(frozen=True)
class AssemblySpec:
    """What :func:`build_assembly` makes (a SYNTHETIC assembly).

    Attributes:
        kind: ``"monomer"`` (one chain), ``"cyclic"`` (Cn about z), ``"dihedral"``
            (Dn: Cn about z plus two-folds along x), ``"helical"`` (``order``
            subunits, each the previous one turned by ``twist`` about z and raised
            by ``rise``) or ``"hetero"`` (``order`` different chains packed
            together without symmetry).
        order: n of Cn / Dn, subunits of a helical assembly, chains of a hetero
            complex; 1 for a monomer.
        n_domains: domains per chain, joined by linkers.
        n_residues: residues of the first domain; other distinct domains vary
            around it by up to 30 %.
        helix_fraction: share of helices among the secondary-structure elements
            (0 all-beta, 1 all-alpha); other distinct domains vary around it.
        n_elements: secondary-structure elements per domain (2-12); ``None`` picks
            from the size.
        architecture: fold class of every domain (one of ``ARCHITECTURES``);
            ``None`` picks from the helix fraction.
        twist: helical twist, degrees per subunit; ``None`` draws one.
        rise: helical rise, Å per subunit; ``None`` picks the most compact one
            without clashes (see the module docs).
        side_chains: add pseudo side chains (SER, MET, LYS); else poly-ALA/GLY.
        seed: everything random derives from it.
    """

    kind: str = "monomer"
    order: int = 1
    n_domains: int = 1
    n_residues: int = 120
    helix_fraction: float = 0.5
    n_elements: int | None = None
    architecture: str | None = None
    twist: float | None = None
    rise: float | None = None
    side_chains: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is unknown; use one of {KINDS}")
        lo, hi = ORDER_RANGE[self.kind]
        if not lo <= self.order <= hi:
            raise ValueError(
                f"order {self.order} is out of range for {self.kind!r}; use {lo}-{hi}"
            )
        if not 1 <= self.n_domains <= 4:
            raise ValueError(f"n_domains {self.n_domains} is out of range; use 1-4")
        if not 40 <= self.n_residues <= 500:
            raise ValueError(
                f"n_residues {self.n_residues} is out of range; use 40-500 per domain"
            )
        if not 0.0 <= self.helix_fraction <= 1.0:
            raise ValueError(
                f"helix_fraction {self.helix_fraction} is out of range; use 0-1"
            )
        if self.n_elements is not None and not 2 <= self.n_elements <= 12:
            raise ValueError(
                f"n_elements {self.n_elements} is out of range; use 2-12 or None"
            )
        if self.architecture is not None and self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture {self.architecture!r} is unknown; "
                f"use one of {ARCHITECTURES} or None"
            )
        if self.twist is not None and not -180.0 < self.twist <= 180.0:
            raise ValueError(f"twist {self.twist} is out of range; use (-180, 180]")
        if self.rise is not None and not 0.0 < self.rise <= 200.0:
            raise ValueError(f"rise {self.rise} Å is out of range; use (0, 200]")
        if self.seed < 0:
            raise ValueError(f"seed {self.seed} is negative; use a seed >= 0")

    @property
    def copies(self) -> int:
        """Symmetric copies of the (first) chain: n for Cn, 2n for Dn, ..."""
        return {"cyclic": self.order, "dihedral": 2 * self.order}.get(
            self.kind, self.order if self.kind == "helical" else 1
        )


@dataclass(frozen=True)
class _DomainPlan:
    n_residues: int
    n_helices: int
    n_strands: int
    architecture: str
    tail_min: tuple[int, int]  # N- and C-terminal, 4 where a linker joins
    key: tuple[int, ...]


# ---------------------------------------------------------------------------
# planning (cheap: no geometry)


def _rng(spec: AssemblySpec, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([spec.seed, *key]))


def _twist(spec: AssemblySpec) -> float:
    if spec.twist is not None:
        return float(spec.twist)
    rng = _rng(spec, 7)
    return float(rng.choice([-1.0, 1.0]) * 360.0 / _per_turn(rng, spec.order))


def _per_turn(rng: np.random.Generator, order: int) -> float:
    """Subunits per turn, 2.5-16, at most ``order / 1.5`` (1.5 turns or more)."""
    return rng.uniform(2.5, max(2.5, min(16.0, order / 1.5)))


def _element_counts(
    arch: str | None, hf: float, n_res: int, n_el: int | None, rng
) -> tuple[str, int, int]:
    if arch is None:
        if hf >= 0.75:
            arch = "alpha"
        elif hf <= 0.25:
            arch = "beta"
        else:
            mixed = 0.35 <= hf <= 0.65 and rng.random() < 0.5
            arch = "alpha/beta" if mixed else "alpha+beta"
    per = {"alpha": 19.0, "beta": 11.0, "alpha/beta": 15.0}.get(
        arch, hf * 19.0 + (1 - hf) * 11.0
    )
    low = 4 if arch in ("alpha/beta", "alpha+beta") else 2
    if n_el is None:
        n_el = int(np.clip(round(n_res / per + rng.uniform(-0.5, 0.5)), low, 12))
    elif n_el < low:
        arch = "alpha" if hf >= 0.5 else "beta"
    if arch == "alpha":
        return arch, n_el, 0
    if arch == "beta":
        return arch, 0, n_el
    if arch == "alpha/beta":
        return arch, n_el // 2, n_el - n_el // 2
    n_h = int(np.clip(round(hf * n_el), 1, n_el - 2))
    return arch, n_h, n_el - n_h


def _plan(spec: AssemblySpec) -> list[list[_DomainPlan]]:
    """Domains of each distinct chain (one chain unless ``kind == "hetero"``)."""
    rng = _rng(spec, 1)
    n_chains = spec.order if spec.kind == "hetero" else 1
    spread = 0.35 if spec.kind == "hetero" else 0.15
    chains = []
    for c in range(n_chains):
        domains = []
        for d in range(spec.n_domains):
            if c == d == 0:
                n_res, hf = spec.n_residues, spec.helix_fraction
            else:
                n_res = int(
                    np.clip(round(spec.n_residues * rng.uniform(0.7, 1.3)), 40, 500)
                )
                hf = float(np.clip(spec.helix_fraction + rng.normal(0, spread), 0, 1))
            arch, n_h, n_e = _element_counts(
                spec.architecture, hf, n_res, spec.n_elements, rng
            )
            if arch == "beta" and n_res > MAX_BETA_RESIDUES:
                if c == d == 0:
                    raise ValueError(
                        f"an all-beta domain of {n_res} residues is too large; use "
                        f"n_residues <= {MAX_BETA_RESIDUES} or a higher helix_fraction"
                    )
                n_res = MAX_BETA_RESIDUES
            tails = (4 if d > 0 else 1, 4 if d < spec.n_domains - 1 else 1)
            domains.append(_DomainPlan(n_res, n_h, n_e, arch, tails, (2, c, d)))
        chains.append(domains)
    return chains


def count_residues(spec: AssemblySpec) -> int:
    """Residues :func:`build_assembly` makes for ``spec`` (cheap: no geometry).

    Args:
        spec: the assembly.

    Returns:
        The exact residue count over all chains.

    Raises:
        ValueError: an all-beta first domain larger than ``MAX_BETA_RESIDUES``.
    """
    per_chain = [sum(d.n_residues for d in chain) for chain in _plan(spec)]
    return sum(per_chain) * spec.copies


def describe(spec: AssemblySpec) -> str:
    """A short label, e.g. ``"SYNTHETIC C4 assembly, 4x2 domains, 812 residues"``.

    Args:
        spec: the assembly.

    Returns:
        ``"SYNTHETIC <kind>, <copies>x<domains> domains, <n> residues"`` (monomers
        and hetero complexes say ``"monomer, 2 domains"``, ``"hetero 3-mer, 6
        domains"``); ``n`` is exact (:func:`count_residues`).

    Raises:
        ValueError: as :func:`count_residues`.
    """
    n = count_residues(spec)
    k, d = spec.order, spec.n_domains
    if spec.kind == "monomer":
        what = f"monomer, {d} domain{'s' * (d > 1)}"
    elif spec.kind == "cyclic":
        what = f"C{k} assembly, {k}x{d} domains"
    elif spec.kind == "dihedral":
        what = f"D{k} assembly, {2 * k}x{d} domains"
    elif spec.kind == "helical":
        what = f"helical assembly (twist {_twist(spec):.1f} deg), {k}x{d} domains"
    else:
        what = f"hetero {k}-mer, {k * d} domains"
    return f"{SYNTHETIC_PREFIX} {what}, {n} residues"


def random_spec(rng: np.random.Generator, max_atoms: int = 20_000) -> AssemblySpec:
    """A varied spec: small single domains up to large symmetric complexes.

    Args:
        rng: source of randomness (the spec's own seed is drawn from it).
        max_atoms: cap on the atoms of one structure (estimated with
            ``ATOMS_PER_RESIDUE``, an upper bound).

    Returns:
        A valid :class:`AssemblySpec`.

    Raises:
        ValueError: ``max_atoms`` below what a 40-residue domain needs.
    """
    side_chains = bool(rng.random() < 0.85)
    per_res = ATOMS_PER_RESIDUE[side_chains]
    if max_atoms < 40 * per_res:
        raise ValueError(f"max_atoms {max_atoms} is too small; use at least 300")
    kind = str(rng.choice(KINDS, p=[0.3, 0.22, 0.16, 0.16, 0.16]))
    fold = rng.choice(3, p=[0.35, 0.25, 0.4])
    hf = float(
        [rng.uniform(0.8, 1.0), rng.uniform(0.0, 0.2), rng.uniform(0.3, 0.7)][fold]
    )
    top = 320 if fold == 0 else (160 if fold == 1 else 260)
    n_res = int(round(math.exp(rng.uniform(math.log(50), math.log(top)))))
    n_domains = int(rng.choice([1, 2, 3], p=[0.6, 0.28, 0.12]))
    order = {
        "monomer": 1,
        "cyclic": int(rng.integers(2, 9)),
        "dihedral": int(rng.integers(2, 7)),
        "helical": int(rng.integers(8, 31)),
        "hetero": int(rng.integers(2, 5)),
    }[kind]
    twist = None
    if kind == "helical":
        twist = round(float(rng.choice([-1, 1]) * 360.0 / _per_turn(rng, order)), 2)
    spec = AssemblySpec(
        kind=kind,
        order=order,
        n_domains=n_domains,
        n_residues=n_res,
        helix_fraction=round(hf, 3),
        twist=twist,
        side_chains=side_chains,
        seed=int(rng.integers(0, 2**31)),
    )
    # over the cap: fewer domains, then smaller ones, then fewer subunits
    lo_order = 8 if kind == "helical" else ORDER_RANGE[kind][0]
    while count_residues(spec) * per_res > max_atoms:
        if spec.n_domains > 1:
            spec = replace(spec, n_domains=spec.n_domains - 1)
        elif spec.n_residues > 80:
            spec = replace(spec, n_residues=int(spec.n_residues * 0.85))
        elif spec.order > lo_order:
            spec = replace(spec, order=spec.order - 1)
        elif spec.n_residues > 40:
            spec = replace(spec, n_residues=max(40, int(spec.n_residues * 0.85)))
        else:
            spec = replace(spec, kind="monomer", order=1, twist=None)
            break
    return spec


# ---------------------------------------------------------------------------
# small geometry helpers


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _perp(v: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Unit component of ``v`` perpendicular to the unit ``axis`` (row-wise)."""
    return _unit(v - (v * axis).sum(-1, keepdims=True) * axis)


def _any_perp(axis: np.ndarray) -> np.ndarray:
    trial = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.eye(3)[1]
    return _perp(trial, axis)


def _rot_z(angle: float) -> np.ndarray:
    return axis_rotation(np.array([0.0, 0.0, 1.0]), angle)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = _unit(rng.normal(size=4))
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _rotation_to(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A rotation taking unit vector ``a`` onto unit vector ``b``."""
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(a @ b)
    if s < 1e-9:
        return np.eye(3) if c > 0 else axis_rotation(_any_perp(a), math.pi)
    return axis_rotation(axis / s, math.atan2(s, c))


def _min_nonadjacent(ca: np.ndarray, radius: float = 4.5) -> float:
    """Smallest CA-CA distance between residues at least 2 apart in sequence."""
    pairs = cKDTree(ca).query_pairs(radius, output_type="ndarray")
    pairs = pairs[np.abs(pairs[:, 0] - pairs[:, 1]) >= 2]
    if len(pairs) == 0:
        return radius
    return float(np.linalg.norm(ca[pairs[:, 0]] - ca[pairs[:, 1]], axis=1).min())


def _quality(ca: np.ndarray) -> float:
    """>= 0 when no CA pair is closer than 3.8 Å and CA-CA steps are 3.8-3.9 Å."""
    step = np.linalg.norm(np.diff(ca, axis=0), axis=1)
    off = float(np.maximum(np.abs(step - 3.85) - 0.05, 0.0).max())
    return min(_min_nonadjacent(ca) - 3.8, -10.0 * off)


def _clashes(tree: cKDTree, points: np.ndarray, distance: float = CONTACT) -> bool:
    d, _ = tree.query(points, distance_upper_bound=distance)
    return bool(np.isfinite(d).any())


# ---------------------------------------------------------------------------
# CA traces: elements, loops


@dataclass
class _Element:
    """A helix (``"H"``) or strand (``"E"``) on its axis (unit, chain direction)."""

    kind: str
    center: np.ndarray
    axis: np.ndarray
    ref: np.ndarray  # helix phase reference / strand pleat direction (unit, ⊥ axis)
    length: int
    phase: float = 0.0

    def ca(self) -> np.ndarray:
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


def _layout(plan: _DomainPlan) -> list[tuple[str, float, float]]:
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


def _loop_min(d: float) -> int:
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


def _arc(
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
    u = _unit(da) + _unit(db)
    u = _unit(u) if np.linalg.norm(u) > 0.3 else out
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


def _tail(
    a2: np.ndarray, a1: np.ndarray, n: int, center: np.ndarray, rng
) -> np.ndarray:
    """Initial free tail of ``n`` CAs leaving ``a1`` away from ``a2`` and ``center``."""
    u = _unit(_unit(a1 - a2) + _unit(a1 - center))
    k = np.arange(1, n + 1)[:, None]
    return a1 + 3.3 * k * u + rng.normal(0.0, 1.0, (n, 3))


class _Paths:
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


# ---------------------------------------------------------------------------
# domains


@dataclass
class _Domain:
    """Core CA trace (elements and loops, centred) and its tail lengths."""

    ca: np.ndarray
    ss: np.ndarray
    tails: tuple[int, int]


def _init_elements(plan: _DomainPlan, rng: np.random.Generator) -> list[_Element]:
    layout = _layout(plan)
    xy = np.array([(x, y) for _, x, y in layout])
    xy -= xy.mean(axis=0)
    n_el = len(layout)
    budget = plan.n_residues - 3.5 * (n_el - 1) - sum(plan.tail_min)
    height = budget / (plan.n_helices / HELIX_RISE + plan.n_strands / STRAND_RISE)
    height = float(np.clip(height, 12.0, 45.0))
    z = np.array([0.0, 0.0, 1.0])
    elements = []
    for k, (kind, _, _) in enumerate(layout):
        axis = z if k % 2 == 0 else -z
        if kind == "H":
            n = round(height / HELIX_RISE * rng.uniform(0.85, 1.15))
            center = np.array([xy[k, 0], xy[k, 1], rng.uniform(-1.5, 1.5)])
            ref, phase = np.array([1.0, 0.0, 0.0]), rng.uniform(0, 2 * math.pi)
            n = int(np.clip(n, *_HELIX_LEN))
        else:
            n = round(height / STRAND_RISE * rng.uniform(0.9, 1.1))
            center = np.array([xy[k, 0], xy[k, 1], 0.0])
            ref, phase = np.array([0.0, 1.0, 0.0]), 0.0
            n = int(np.clip(n, *_STRAND_LEN))
        elements.append(_Element(kind, center, axis, ref, n, phase))
    return elements


def _tilt(elements: list[_Element], tilts: list[np.ndarray], scale: float) -> None:
    """Tilt the helices by their rotation vectors (radians) times ``scale``."""
    for e, t in zip(elements, tilts, strict=True):
        if e.kind != "H":
            continue
        base_axis = np.array([0.0, 0.0, 1.0]) * np.sign(e.axis[2] or 1.0)
        angle = float(np.linalg.norm(t)) * scale
        rot = axis_rotation(_unit(t), angle) if angle > 0 else np.eye(3)
        e.axis = rot @ base_axis
        e.ref = rot @ np.array([1.0, 0.0, 0.0])


def _element_clash(cas: list[np.ndarray]) -> bool:
    owner = np.concatenate([np.full(len(c), k) for k, c in enumerate(cas)])
    pairs = cKDTree(np.vstack(cas)).query_pairs(4.6, output_type="ndarray")
    return bool((owner[pairs[:, 0]] != owner[pairs[:, 1]]).any())


def _resize(elements: list[_Element], change: int) -> bool:
    """Grow (``change > 0``) or shrink the elements by ``|change|`` residues."""
    bounds = [_HELIX_LEN if e.kind == "H" else _STRAND_LEN for e in elements]
    step = 1 if change > 0 else -1
    done = 0
    while done < abs(change):
        fill = [
            (e.length - lo) / (hi - lo)
            for e, (lo, hi) in zip(elements, bounds, strict=True)
        ]
        order = np.argsort(fill) if step > 0 else np.argsort(fill)[::-1]
        moved = False
        for k in order:
            lo, hi = bounds[k]
            if lo <= elements[k].length + step <= hi:
                elements[k].length += step
                done += 1
                moved = True
                if done == abs(change):
                    break
        if not moved:
            return done > 0
    return True


def _fit_lengths(
    elements: list[_Element], plan: _DomainPlan
) -> tuple[list[np.ndarray], list[int], int]:
    """Element lengths so that minimal loops and tails leave a small spare count."""
    n_el = len(elements)
    slack = 2 * (n_el - 1) + 8
    for attempt in range(41):
        cas = [e.ca() for e in elements]
        mins = [
            _loop_min(float(np.linalg.norm(cas[k + 1][0] - cas[k][-1])))
            for k in range(n_el - 1)
        ]
        spare = (
            plan.n_residues
            - sum(e.length for e in elements)
            - sum(mins)
            - sum(plan.tail_min)
        )
        if 0 <= spare <= slack or attempt == 40:
            break
        change = spare if spare < 0 else spare - slack // 2
        if not _resize(elements, change):
            break
    if spare < 0:
        raise ValueError(
            f"{plan.n_residues} residues are too few for {n_el} elements; "
            "use more n_residues or fewer n_elements"
        )
    return cas, mins, spare


def _build_domain(plan: _DomainPlan, rng: np.random.Generator) -> _Domain:
    elements = _init_elements(plan, rng)
    tilts = []
    for _ in elements:
        t = rng.normal(size=3)
        t[2] = 0.0
        tilts.append(_unit(t) * math.radians(rng.uniform(0.0, 10.0)))
    for scale in (1.0, 0.5, 0.25, 0.0):
        _tilt(elements, tilts, scale)
        cas, mins, spare = _fit_lengths(elements, plan)
        if not _element_clash(cas):
            break
    # spare residues: 0-2 into each loop, up to 3 into each free terminus (one
    # without a linker), the rest (when the elements are at their longest) spread
    # over the loops
    loops = list(mins)
    for k in rng.permutation(len(loops)):
        extra = min(spare, int(rng.integers(0, 3)))
        loops[k] += extra
        spare -= extra
    free = [plan.tail_min[0] == 1, plan.tail_min[1] == 1]
    to_tails = min(spare, 3 * sum(free))
    for k in range(spare - to_tails):
        loops[k % len(loops)] += 1
    head = int(rng.integers(0, to_tails + 1)) if all(free) else to_tails * free[0]
    tails = (plan.tail_min[0] + head, plan.tail_min[1] + to_tails - head)
    center = np.vstack(cas).mean(axis=0)
    static = np.vstack(
        [c[2 * (k > 0) : len(c) - 2 * (k < len(cas) - 1)] for k, c in enumerate(cas)]
    )
    best = None
    for _attempt in range(3):
        paths = _Paths()
        for k, m in enumerate(loops):
            a, b = cas[k], cas[k + 1]
            out = _unit(0.5 * (a[-1] + b[0]) - center)
            arc = _arc(
                a[-1], elements[k].axis, b[0], -elements[k + 1].axis, m, out, rng
            )
            paths.add(a[-2:], arc, b[:2])
        parts, ss = [cas[0]], [_ss_of(elements[0], len(cas[0]))]
        for k, loop in enumerate(paths.relax(static)):
            parts += [loop, cas[k + 1]]
            ss += [
                np.full(len(loop), _SS_LOOP),
                _ss_of(elements[k + 1], len(cas[k + 1])),
            ]
        ca = np.vstack(parts)
        score = _quality(ca)
        if best is None or score > best[0]:
            best = (score, ca, np.concatenate(ss))
        if score >= 0.0:
            break
    _, ca, ss = best
    return _Domain(ca - ca.mean(axis=0), ss, tails)


def _ss_of(element: _Element, n: int) -> np.ndarray:
    return np.full(n, _SS_HELIX if element.kind == "H" else _SS_STRAND)


# ---------------------------------------------------------------------------
# chains: domains, linkers, termini


def _place(
    cluster: np.ndarray,
    body: np.ndarray,
    rng: np.random.Generator,
    link: int = 0,
    tries: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Put ``body`` (centred) against ``cluster``, ``CONTACT`` apart.

    Without a ``link`` the candidate (random direction and rotation) nearest the
    cluster centre wins. With one (a linker of ``link`` residues from the cluster's
    last CA to ``body[0]``), the body goes 35-70° away from that end's direction,
    so the end sits at the rim of the interface, with ``body[0]`` turned towards
    it; the candidate whose initial linker runs clear of both and is shortest wins.

    Returns:
        ``(placed, linker, rot, shift)``: the placed body (``body @ rot.T + shift``)
        and the initial linker (empty without ``link``).
    """
    tree = cKDTree(cluster)
    c = cluster.mean(axis=0)
    r_c = float(np.linalg.norm(cluster - c, axis=1).max())
    r_b = float(np.linalg.norm(body, axis=1).max())
    a1 = cluster[-1]
    best, best_score = (body, np.zeros((0, 3)), np.eye(3), np.zeros(3)), np.inf
    for _ in range(tries):
        if not link:
            u, rot = _unit(rng.normal(size=3)), _random_rotation(rng)
        else:
            u0 = _unit(a1 - c)
            side = axis_rotation(u0, rng.uniform(0, 2 * math.pi)) @ _any_perp(u0)
            angle = math.radians(rng.uniform(35.0, 70.0))
            u = math.cos(angle) * u0 + math.sin(angle) * side
            facing = _unit(a1 - (c + (r_c + 0.7 * r_b) * u))
            spin = axis_rotation(facing, rng.uniform(0, 2 * math.pi))
            rot = spin @ _rotation_to(_unit(body[0]), facing)
        b = body @ rot.T + c
        lo, hi = 0.0, r_c + r_b + CONTACT + 1.0
        for _ in range(12):
            mid = 0.5 * (lo + hi)
            if _clashes(tree, b + mid * u):
                lo = mid
            else:
                hi = mid
        placed = b + hi * u
        if not link:
            score, arc = hi, np.zeros((0, 3))
        else:
            out = _unit(0.5 * (a1 + placed[0]) - c)
            da, db = _unit(a1 - cluster[-4]), _unit(placed[0] - placed[3])
            arc = _arc(a1, da, placed[0], db, link, out, rng)
            d_in, _ = tree.query(arc)
            d_body = np.linalg.norm(arc[:, None] - placed[None, 2:], axis=2).min(1)
            blocked = int(((d_in < 3.5) | (d_body < 3.5)).sum())
            score = 20.0 * blocked + np.linalg.norm(placed[0] - a1) + 0.25 * hi
        if score < best_score:
            best, best_score = (placed, arc, rot, c + hi * u), score
    return best


def _build_chain(
    spec: AssemblySpec, plans: list[_DomainPlan], key: int
) -> tuple[np.ndarray, np.ndarray]:
    """CA trace and secondary structure of one chain, centred at the origin."""
    domains = [_build_domain(p, _rng(spec, *p.key)) for p in plans]
    best = None
    for attempt in range(3):
        ca, ss = _join_domains(domains, _rng(spec, 3, key, attempt))
        score = _quality(ca)
        if best is None or score > best[0]:
            best = (score, ca, ss)
        if score >= 0.0:
            break
    return best[1], best[2]


def _join_domains(
    domains: list[_Domain], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Place the domains one against the other, then relax linkers and termini."""
    cores = [domains[0].ca @ _random_rotation(rng).T]
    links = []
    for k in range(1, len(domains)):
        m = domains[k - 1].tails[1] + domains[k].tails[0]
        core, link, _, _ = _place(np.vstack(cores), domains[k].ca, rng, link=m)
        cores.append(core)
        links.append(link)
    center = np.vstack(cores).mean(axis=0)
    n_n, n_c = domains[0].tails[0], domains[-1].tails[1]
    first, last = cores[0], cores[-1]
    paths = _Paths()
    paths.add(
        np.zeros((0, 3)), _tail(first[1], first[0], n_n, center, rng)[::-1], first[:2]
    )
    for k, link in enumerate(links):
        paths.add(cores[k][-2:], link, cores[k + 1][:2])
    paths.add(last[-2:], _tail(last[-2], last[-1], n_c, center, rng), np.zeros((0, 3)))
    static = np.vstack([c[2:-2] for c in cores])
    built = paths.relax(static)
    parts = [built[0]]
    ss = [np.full(n_n, _SS_LOOP)]
    for k, core in enumerate(cores):
        parts += [core, built[k + 1]]
        ss += [domains[k].ss, np.full(len(built[k + 1]), _SS_LOOP)]
    ca = np.vstack(parts)
    return ca - ca.mean(axis=0), np.concatenate(ss)


# ---------------------------------------------------------------------------
# assemblies


def _bisect(clash, lo: float, hi: float, steps: int = 14) -> float:
    """Smallest value in [lo, hi] without a clash (``hi`` must be clash-free)."""
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if clash(mid):
            lo = mid
        else:
            hi = mid
    return hi


def _cyclic(
    ca: np.ndarray, n: int, lift: float = 0.0
) -> tuple[float, list[np.ndarray]]:
    """Radius of a clash-free Cn ring of ``ca`` (centred) and the ring operators."""
    rots = [_rot_z(2 * math.pi * k / n) for k in range(n)]
    xy = np.linalg.norm(ca[:, :2], axis=1).max()
    hi = (xy + CONTACT) / math.sin(math.pi / n)

    def clash(r: float) -> bool:
        p = ca + [r, 0.0, lift]
        return _clashes(cKDTree(p), np.vstack([p @ m.T for m in rots[1:]]))

    return _bisect(clash, 0.0, hi), rots


def _symmetric(
    ca: np.ndarray, spec: AssemblySpec, twist: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rigid operators ``(R, t)`` (x -> R x + t) placing each copy of the chain."""
    n = spec.order
    if spec.kind == "cyclic":
        r, rots = _cyclic(ca, n)
        return [(m, m @ [r, 0.0, 0.0]) for m in rots]
    if spec.kind == "dihedral":
        r, rots = _cyclic(ca, n)
        flip = np.diag([1.0, -1.0, -1.0])  # two-fold about x
        ring = [m @ (ca + [r, 0.0, 0.0]).T for m in rots]
        z = np.abs(ca[:, 2]).max()

        def clash(h: float) -> bool:
            top = np.hstack(ring).T + [0.0, 0.0, h]
            return _clashes(cKDTree(top), top @ flip.T)

        h = _bisect(clash, 0.0, z + CONTACT)
        ops = [(m, m @ [r, 0.0, h]) for m in rots]
        return ops + [(flip @ m, flip @ t) for m, t in ops]
    # helical: for each rise on a 1 Å grid the smallest clash-free radius; keep
    # the pair with the smallest volume per subunit (radius x rise)
    turn = math.radians(twist)
    rots = [_rot_z(turn * k) for k in range(n)]
    tree = cKDTree(ca)  # copy 0, seen from its own centre
    height = float(np.ptp(ca[:, 2])) + CONTACT
    xy = np.linalg.norm(ca[:, :2], axis=1).max()
    r_hi = (xy + CONTACT) / max(math.sin(min(abs(turn), math.pi) / 2), 0.1)
    ex = np.array([1.0, 0.0, 0.0])

    def clash(r: float, rise: float) -> bool:
        ks = [k for k in range(1, n) if k * rise < height]
        others = [
            ca @ rots[k].T + r * (rots[k] @ ex - ex) + [0.0, 0.0, k * rise] for k in ks
        ]
        return bool(ks) and _clashes(tree, np.vstack(others))

    if spec.rise is not None:
        rise = float(spec.rise)
        if clash(r_hi, rise):
            raise ValueError(
                f"rise {rise:g} Å is too small for this subunit at twist "
                f"{twist:g}°; use a larger rise or rise=None (the smallest that fits)"
            )
        r = _bisect(lambda x: clash(x, rise), 0.0, r_hi)
    else:
        best = (np.inf, height, r_hi)
        for h in np.arange(1.0, height + 1.0, 1.0):
            if clash(r_hi, h):
                continue
            x = _bisect(lambda x, h=h: clash(x, h), 0.0, r_hi, steps=8)
            if (x + xy) * h < best[0]:
                best = ((x + xy) * h, h, x)
        _, rise, r = best
        r = _bisect(lambda x: clash(x, rise), max(0.0, r - r_hi / 256), r)
    shift = 0.5 * rise * (n - 1)
    return [
        (m, m @ [r, 0.0, 0.0] + [0.0, 0.0, rise * k - shift])
        for k, m in enumerate(rots)
    ]


# ---------------------------------------------------------------------------
# atoms


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
    bc = _unit(c - b)
    n = _unit(np.cross(b - a, bc))
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
    u = _unit(ca[i + 1] - ca[i])
    y = _perp(ca[i - 1] - ca[i], u)
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
    b, c = _unit(n_at - ca), _unit(c_at - ca)
    bis = _unit(b + c)
    normal = _unit(np.cross(c, b))
    return np.stack([bis, normal, np.cross(bis, normal)], axis=-2)


def _cb_mix() -> np.ndarray:
    """Ideal CB direction in :func:`_cb_frame` terms (tetrahedral rule)."""
    n_at, ca = np.array([-1.458, 0.0, 0.0]), np.zeros(3)
    a = math.radians(180.0 - 111.2)
    c_at = 1.525 * np.array([math.cos(a), math.sin(a), 0.0])
    b, c = ca - n_at, c_at - ca
    cb = -0.58273431 * np.cross(b, c) + 0.56802827 * b - 0.54067466 * c
    return _cb_frame(n_at, ca, c_at) @ _unit(cb)


_CB_MIX = _cb_mix()
#: Residues with at least this many CA within 10 Å of CA + 2.4 Å along CA->CB
#: point into their domain and get short side chains.
BURIED_NEIGHBOURS = 20

#: Peptide atoms (C, O, N) in the CA frame: ideal alpha helix, ideal beta strand.
_PEPTIDE = np.stack([_peptide_table(-57.8, -47.0), _peptide_table(-120.0, 130.0)])

_RESIDUES = ("GLY", "ALA", "SER", "MET", "LYS")
_ATOM_NAMES = {
    "GLY": ("N", "CA", "C", "O"),
    "ALA": ("N", "CA", "C", "O", "CB"),
    "SER": ("N", "CA", "C", "O", "CB", "OG"),
    "MET": ("N", "CA", "C", "O", "CB", "CG", "SD", "CE"),
    "LYS": ("N", "CA", "C", "O", "CB", "CG", "CD", "CE", "NZ"),
}
_N_ATOMS = np.array([len(_ATOM_NAMES[r]) for r in _RESIDUES])


def _backbone(ca: np.ndarray, ss: np.ndarray) -> tuple[np.ndarray, ...]:
    """N, C, O and CB of every residue from the CA trace (see module docs)."""
    n = len(ca)
    v0 = ca[0] - (ca[2] - ca[1])
    ext = np.vstack([v0 - (ca[1] - ca[0]), v0, ca, ca[-1] + (ca[-2] - ca[-3])])
    here, nxt, prev = ext[1:-1], ext[2:], ext[:-2]  # peptide k: here[k] -> nxt[k]
    u = _unit(nxt - here)
    y = _perp(prev - here, u)
    z = np.cross(u, y)
    label = ss[np.clip(np.arange(n + 1) - 1, 0, n - 1)]
    cos_angle = (_unit(prev - here) * u).sum(1)
    loop_type = np.where(cos_angle > math.cos(math.radians(105.0)), 0, 1)
    table = _PEPTIDE[np.where(label == _SS_LOOP, loop_type, label)]  # (n+1, 3, 3)

    def put(origin: np.ndarray, row: int) -> np.ndarray:
        t = table[:, row]
        return origin + t[:, :1] * u + t[:, 1:2] * y + t[:, 2:] * z

    n_at, c_at, o_at = put(nxt, 2)[:n], put(here, 0)[1:], put(here, 1)[1:]
    return n_at, c_at, o_at, _cb(n_at, ca, c_at)


def _cb(n_at: np.ndarray, ca: np.ndarray, c_at: np.ndarray) -> np.ndarray:
    """Ideal CB (L-amino acid): fixed mix of the N-CA-C bisector and normal."""
    frame = _cb_frame(n_at, ca, c_at)  # (n, 3 axes, xyz)
    return ca + CB_BOND * np.einsum("a,nax->nx", _CB_MIX, frame)


def _atoms(
    ca: np.ndarray, ss: np.ndarray, side_chains: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Residue types (indices into ``_RESIDUES``) and all atom coordinates, in
    residue order with each residue's atoms as in ``_ATOM_NAMES``."""
    n_at, c_at, o_at, cb = _backbone(ca, ss)
    d = _unit(cb - ca)
    p = _perp(ca - n_at, d)
    axis = (1.25 * d - 0.88 * p) / 1.53  # zigzag CA-CB-CG-... (1.53 Å, ~110°)
    side = (0.88 * d + 1.25 * p) / 1.53
    k = np.arange(2, 6)[None, :, None]
    extra = ca[:, None] + 1.25 * k * axis[:, None] + 0.88 * (k % 2) * side[:, None]
    slots = np.concatenate(
        [np.stack([n_at, ca, c_at, o_at, cb], axis=1), extra], axis=1
    )  # (n, 9, 3)
    gly = rng.random(len(ca)) < np.where(ss == _SS_LOOP, 0.2, 0.04)
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


# ---------------------------------------------------------------------------
# public builder


def _chain_name(i: int) -> str:
    """A, B, ..., Z, then AA, AB, ..."""
    letters = string.ascii_uppercase
    return letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26]


def build_assembly(spec: AssemblySpec) -> gemmi.Structure:
    """Build the SYNTHETIC assembly ``spec`` describes (deterministic per spec).

    Args:
        spec: what to build; see :class:`AssemblySpec` and :func:`random_spec`.

    Returns:
        A one-model gemmi Structure named ``"SYNTHETIC-..."`` with one chain per
        subunit (A, B, ...; AA, AB, ... after Z), residues GLY/ALA/SER/MET/LYS with
        N, CA, C, O (CB and pseudo side chains) and elements set; its title
        (``info["_struct.title"]``) is :func:`describe`'s label. Symmetry frames
        are in the module docs.

    Raises:
        ValueError: a spec that cannot be built (too few residues for the
            elements, an all-beta domain that is too large, a helical rise too
            small for the subunit).
    """
    chains = [_build_chain(spec, plan, k) for k, plan in enumerate(_plan(spec))]
    helices = [_runs(ss == _SS_HELIX) for _, ss in chains]
    atoms = [
        _atoms(ca, ss, spec.side_chains, _rng(spec, 4, k))
        for k, (ca, ss) in enumerate(chains)
    ]
    eye = (np.eye(3), np.zeros(3))
    if spec.kind == "monomer":
        placed = [(0, *eye)]
    elif spec.kind == "hetero":
        rng = _rng(spec, 5)
        placed = [(0, *eye)]
        cluster = chains[0][0]
        for k in range(1, len(chains)):
            body = chains[k][0]
            pts, _, rot, shift = _place(cluster, body, rng)
            placed.append((k, rot, shift))
            cluster = np.vstack([cluster, pts])
        center = cluster.mean(axis=0)
        placed = [(k, rot, shift - center) for k, rot, shift in placed]
    else:
        twist = _twist(spec)
        placed = [
            (0, rot, shift) for rot, shift in _symmetric(chains[0][0], spec, twist)
        ]
    structure = gemmi.Structure()
    structure.name = f"{SYNTHETIC_PREFIX}-{_short_kind(spec)}-seed{spec.seed}"
    structure.info["_struct.title"] = describe(spec)
    model = gemmi.Model("1")
    elements = {e: gemmi.Element(e) for e in "CNOS"}
    for index, (k, rot, shift) in enumerate(placed):
        kind, xyz = atoms[k]
        xyz = xyz @ rot.T + shift
        chain = gemmi.Chain(_chain_name(index))
        start = 0
        for number, code in enumerate(kind, start=1):
            name = _RESIDUES[code]
            residue = gemmi.Residue()
            residue.name = name
            residue.seqid = gemmi.SeqId(number, " ")
            residue.entity_type = gemmi.EntityType.Polymer
            residue.het_flag = "A"
            for atom_name in _ATOM_NAMES[name]:
                x, y, z = xyz[start]
                start += 1
                atom = gemmi.Atom()
                atom.name = atom_name
                atom.element = elements[atom_name[0]]
                atom.pos = gemmi.Position(x, y, z)
                atom.occ = 1.0
                atom.b_iso = 30.0
                residue.add_atom(atom)
            chain.add_residue(residue)
        for first, last in helices[k]:
            helix = gemmi.Helix()
            helix.start = gemmi.AtomAddress(
                chain.name, gemmi.SeqId(first + 1, " "), _RESIDUES[kind[first]], "CA"
            )
            helix.end = gemmi.AtomAddress(
                chain.name, gemmi.SeqId(last + 1, " "), _RESIDUES[kind[last]], "CA"
            )
            helix.pdb_helix_class = gemmi.Helix.HelixClass.RAlpha
            helix.length = last - first + 1
            structure.helices.append(helix)
        model.add_chain(chain)
    structure.add_model(model)
    structure.setup_entities()
    return structure


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last)`` index of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(
        zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True)
    )


def _short_kind(spec: AssemblySpec) -> str:
    return {
        "monomer": "monomer",
        "cyclic": f"C{spec.order}",
        "dihedral": f"D{spec.order}",
        "helical": f"helical{spec.order}",
        "hetero": f"hetero{spec.order}",
    }[spec.kind]
