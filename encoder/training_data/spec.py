"""What a SYNTHETIC assembly is made of: :class:`AssemblySpec` and its planning.

The planning is cheap (no geometry): :func:`plan_domains` fixes, from the spec's
seed, the size and fold of every domain of every distinct chain, which is enough to
count residues exactly (:func:`count_residues`). The geometry is built by
:func:`encoder.training_data.synthetic.build_assembly`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
#: Largest all-beta domain (12 strands of at most 14 residues and their loops).
MAX_BETA_RESIDUES = 240
#: Upper bound on heavy atoms per residue, used for size caps.
ATOMS_PER_RESIDUE = {True: 7.0, False: 5.0}


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
            without clashes (see :mod:`encoder.training_data.synthetic`).
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
class DomainPlan:
    """One domain as planned: its size, fold and where its random stream comes from.

    Attributes:
        n_residues: residues of the domain, tails and linker halves included.
        n_helices: helices among its elements.
        n_strands: strands among its elements.
        architecture: fold class (one of ``ARCHITECTURES``).
        tail_min: smallest N- and C-terminal tails (4 where a linker joins).
        key: seed key of the domain's random stream (:func:`spec_rng`).
    """

    n_residues: int
    n_helices: int
    n_strands: int
    architecture: str
    tail_min: tuple[int, int]  # N- and C-terminal, 4 where a linker joins
    key: tuple[int, ...]


def spec_rng(spec: AssemblySpec, *key: int) -> np.random.Generator:
    """The random stream ``key`` of ``spec`` (seeded by ``[spec.seed, *key]``)."""
    return np.random.default_rng(np.random.SeedSequence([spec.seed, *key]))


def helical_twist(spec: AssemblySpec) -> float:
    """Helical twist, degrees per subunit: ``spec.twist``, else drawn from the seed."""
    if spec.twist is not None:
        return float(spec.twist)
    rng = spec_rng(spec, 7)
    return float(rng.choice([-1.0, 1.0]) * 360.0 / per_turn(rng, spec.order))


def per_turn(rng: np.random.Generator, order: int) -> float:
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


def plan_domains(spec: AssemblySpec) -> list[list[DomainPlan]]:
    """Domains of each distinct chain (one chain unless ``kind == "hetero"``)."""
    rng = spec_rng(spec, 1)
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
            domains.append(DomainPlan(n_res, n_h, n_e, arch, tails, (2, c, d)))
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
    per_chain = [sum(d.n_residues for d in chain) for chain in plan_domains(spec)]
    return sum(per_chain) * spec.copies
