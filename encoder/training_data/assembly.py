"""SYNTHETIC chains (domains joined by linkers) and their symmetric assemblies."""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from encoder.training_data.domains import Domain, build_domain
from encoder.training_data.geometry import (
    CONTACT,
    any_perp,
    clashes,
    random_quaternion_rotation,
    rot_z,
    rotation_to,
    trace_quality,
    unit,
)
from encoder.training_data.spec import AssemblySpec, DomainPlan, spec_rng
from encoder.training_data.traces import SS_LOOP, Paths, loop_arc, tail_path
from ingest.transform import axis_rotation

# ---------------------------------------------------------------------------
# chains: domains, linkers, termini


def place(
    cluster: np.ndarray,
    body: np.ndarray,
    rng: np.random.Generator,
    link: int = 0,
    tries: int = 10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Put ``body`` (centred) against ``cluster``, ``CONTACT`` apart.

    Without a ``link`` the candidate (random direction and rotation) nearest the
    cluster centre wins. With one (a linker of ``link`` residues from the cluster's
    last CA to ``body[0]``), the body goes 35-70° away from that end's direction,
    so the end sits at the rim of the interface, with ``body[0]`` turned towards
    it; the candidate whose initial linker runs clear of both and is shortest wins.

    Args:
        cluster: CA coordinates ``[N, 3]`` already placed (chain order).
        body: CA coordinates ``[M, 3]`` to place, centred at the origin.
        rng: random stream of the placement.
        link: linker residues from ``cluster[-1]`` to the placed ``body[0]``; 0
            for none (a separate chain).
        tries: candidates tried.

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
            u, rot = unit(rng.normal(size=3)), random_quaternion_rotation(rng)
        else:
            u0 = unit(a1 - c)
            side = axis_rotation(u0, rng.uniform(0, 2 * math.pi)) @ any_perp(u0)
            angle = math.radians(rng.uniform(35.0, 70.0))
            u = math.cos(angle) * u0 + math.sin(angle) * side
            facing = unit(a1 - (c + (r_c + 0.7 * r_b) * u))
            spin = axis_rotation(facing, rng.uniform(0, 2 * math.pi))
            rot = spin @ rotation_to(unit(body[0]), facing)
        b = body @ rot.T + c
        lo, hi = 0.0, r_c + r_b + CONTACT + 1.0
        for _ in range(12):
            mid = 0.5 * (lo + hi)
            if clashes(tree, b + mid * u):
                lo = mid
            else:
                hi = mid
        placed = b + hi * u
        if not link:
            score, arc = hi, np.zeros((0, 3))
        else:
            out = unit(0.5 * (a1 + placed[0]) - c)
            da, db = unit(a1 - cluster[-4]), unit(placed[0] - placed[3])
            arc = loop_arc(a1, da, placed[0], db, link, out, rng)
            d_in, _ = tree.query(arc)
            d_body = np.linalg.norm(arc[:, None] - placed[None, 2:], axis=2).min(1)
            blocked = int(((d_in < 3.5) | (d_body < 3.5)).sum())
            score = 20.0 * blocked + np.linalg.norm(placed[0] - a1) + 0.25 * hi
        if score < best_score:
            best, best_score = (placed, arc, rot, c + hi * u), score
    return best


def build_chain(
    spec: AssemblySpec, plans: list[DomainPlan], key: int
) -> tuple[np.ndarray, np.ndarray]:
    """CA trace and secondary structure of one chain, centred at the origin.

    Args:
        spec: the assembly (its seed drives every random stream).
        plans: the chain's domains, N to C (from
            :func:`encoder.training_data.spec.plan_domains`).
        key: index of the distinct chain (its random streams).

    Returns:
        ``(ca, ss)``: CA coordinates ``[N, 3]`` and secondary-structure codes ``[N]``.
    """
    domains = [build_domain(p, spec_rng(spec, *p.key)) for p in plans]
    best = None
    for attempt in range(3):
        ca, ss = _join_domains(domains, spec_rng(spec, 3, key, attempt))
        score = trace_quality(ca)
        if best is None or score > best[0]:
            best = (score, ca, ss)
        if score >= 0.0:
            break
    return best[1], best[2]


def _join_domains(
    domains: list[Domain], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Place the domains one against the other, then relax linkers and termini."""
    cores = [domains[0].ca @ random_quaternion_rotation(rng).T]
    links = []
    for k in range(1, len(domains)):
        m = domains[k - 1].tails[1] + domains[k].tails[0]
        core, link, _, _ = place(np.vstack(cores), domains[k].ca, rng, link=m)
        cores.append(core)
        links.append(link)
    center = np.vstack(cores).mean(axis=0)
    n_n, n_c = domains[0].tails[0], domains[-1].tails[1]
    first, last = cores[0], cores[-1]
    paths = Paths()
    paths.add(
        np.zeros((0, 3)),
        tail_path(first[1], first[0], n_n, center, rng)[::-1],
        first[:2],
    )
    for k, link in enumerate(links):
        paths.add(cores[k][-2:], link, cores[k + 1][:2])
    paths.add(
        last[-2:], tail_path(last[-2], last[-1], n_c, center, rng), np.zeros((0, 3))
    )
    static = np.vstack([c[2:-2] for c in cores])
    built = paths.relax(static)
    parts = [built[0]]
    ss = [np.full(n_n, SS_LOOP)]
    for k, core in enumerate(cores):
        parts += [core, built[k + 1]]
        ss += [domains[k].ss, np.full(len(built[k + 1]), SS_LOOP)]
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
    rots = [rot_z(2 * math.pi * k / n) for k in range(n)]
    xy = np.linalg.norm(ca[:, :2], axis=1).max()
    hi = (xy + CONTACT) / math.sin(math.pi / n)

    def clash(r: float) -> bool:
        p = ca + [r, 0.0, lift]
        return clashes(cKDTree(p), np.vstack([p @ m.T for m in rots[1:]]))

    return _bisect(clash, 0.0, hi), rots


def symmetric_operators(
    ca: np.ndarray, spec: AssemblySpec, twist: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rigid operators ``(R, t)`` (x -> R x + t) placing each copy of the chain.

    Args:
        ca: the chain's CA coordinates ``[N, 3]``, centred.
        spec: a ``"cyclic"``, ``"dihedral"`` or ``"helical"`` assembly.
        twist: helical twist, degrees per subunit (helical only).

    Returns:
        One ``(R, t)`` per copy, in chain order (frames in the module docs of
        :mod:`encoder.training_data.synthetic`).

    Raises:
        ValueError: a given helical rise too small for the subunit.
    """
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
            return clashes(cKDTree(top), top @ flip.T)

        h = _bisect(clash, 0.0, z + CONTACT)
        ops = [(m, m @ [r, 0.0, h]) for m in rots]
        return ops + [(flip @ m, flip @ t) for m, t in ops]
    # helical: for each rise on a 1 Å grid the smallest clash-free radius; keep
    # the pair with the smallest volume per subunit (radius x rise)
    turn = math.radians(twist)
    rots = [rot_z(turn * k) for k in range(n)]
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
        return bool(ks) and clashes(tree, np.vstack(others))

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
