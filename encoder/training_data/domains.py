"""One SYNTHETIC domain: its elements placed, sized and joined by relaxed loops."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from encoder.training_data.geometry import trace_quality, unit
from encoder.training_data.spec import DomainPlan
from encoder.training_data.traces import (
    HELIX_RISE,
    SS_HELIX,
    SS_LOOP,
    SS_STRAND,
    STRAND_RISE,
    Element,
    Paths,
    element_layout,
    loop_arc,
    loop_min,
)
from ingest.transform import axis_rotation

_HELIX_LEN = (6, 36)
_STRAND_LEN = (4, 14)


@dataclass
class Domain:
    """Core CA trace (elements and loops, centred) and its tail lengths."""

    ca: np.ndarray
    ss: np.ndarray
    tails: tuple[int, int]


def _init_elements(plan: DomainPlan, rng: np.random.Generator) -> list[Element]:
    layout = element_layout(plan)
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
        elements.append(Element(kind, center, axis, ref, n, phase))
    return elements


def _tilt(elements: list[Element], tilts: list[np.ndarray], scale: float) -> None:
    """Tilt the helices by their rotation vectors (radians) times ``scale``."""
    for e, t in zip(elements, tilts, strict=True):
        if e.kind != "H":
            continue
        base_axis = np.array([0.0, 0.0, 1.0]) * np.sign(e.axis[2] or 1.0)
        angle = float(np.linalg.norm(t)) * scale
        rot = axis_rotation(unit(t), angle) if angle > 0 else np.eye(3)
        e.axis = rot @ base_axis
        e.ref = rot @ np.array([1.0, 0.0, 0.0])


def _element_clash(cas: list[np.ndarray]) -> bool:
    owner = np.concatenate([np.full(len(c), k) for k, c in enumerate(cas)])
    pairs = cKDTree(np.vstack(cas)).query_pairs(4.6, output_type="ndarray")
    return bool((owner[pairs[:, 0]] != owner[pairs[:, 1]]).any())


def _resize(elements: list[Element], change: int) -> bool:
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
    elements: list[Element], plan: DomainPlan
) -> tuple[list[np.ndarray], list[int], int]:
    """Element lengths so that minimal loops and tails leave a small spare count."""
    n_el = len(elements)
    slack = 2 * (n_el - 1) + 8
    for attempt in range(41):
        cas = [e.ca() for e in elements]
        mins = [
            loop_min(float(np.linalg.norm(cas[k + 1][0] - cas[k][-1])))
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


def build_domain(plan: DomainPlan, rng: np.random.Generator) -> Domain:
    """Build one domain's core: tilted, sized elements joined by relaxed loops.

    Args:
        plan: the domain's size, fold and tail minimums.
        rng: the domain's own random stream.

    Returns:
        The centred core trace and its secondary structure, with the tail lengths
        the chain builder adds.

    Raises:
        ValueError: too few residues for the elements.
    """
    elements = _init_elements(plan, rng)
    tilts = []
    for _ in elements:
        t = rng.normal(size=3)
        t[2] = 0.0
        tilts.append(unit(t) * math.radians(rng.uniform(0.0, 10.0)))
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
        paths = Paths()
        for k, m in enumerate(loops):
            a, b = cas[k], cas[k + 1]
            out = unit(0.5 * (a[-1] + b[0]) - center)
            arc = loop_arc(
                a[-1], elements[k].axis, b[0], -elements[k + 1].axis, m, out, rng
            )
            paths.add(a[-2:], arc, b[:2])
        parts, ss = [cas[0]], [_ss_of(elements[0], len(cas[0]))]
        for k, loop in enumerate(paths.relax(static)):
            parts += [loop, cas[k + 1]]
            ss += [
                np.full(len(loop), SS_LOOP),
                _ss_of(elements[k + 1], len(cas[k + 1])),
            ]
        ca = np.vstack(parts)
        score = trace_quality(ca)
        if best is None or score > best[0]:
            best = (score, ca, np.concatenate(ss))
        if score >= 0.0:
            break
    _, ca, ss = best
    return Domain(ca - ca.mean(axis=0), ss, tails)


def _ss_of(element: Element, n: int) -> np.ndarray:
    return np.full(n, SS_HELIX if element.kind == "H" else SS_STRAND)
