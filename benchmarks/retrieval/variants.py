"""Ground-truth *versions* of held-out molecules for the retrieval benchmark.

The benchmark asks: given a query map of molecule M, is another deposition of M at
the top of the search results? Real EMDB depositions of one molecule differ in
pose, resolution, box, noise, the depositor's contour, missing parts and
conformation; :func:`make_versions` makes one simulated map per such difference
from an atomic model (``ingest.simulate_map``, molmap-style Gaussians).

Everything here is **simulated** (``DensityMap.simulated`` is True, the path reads
``simulated:...`` and ``warnings`` say so) and deterministic given the
``numpy.random.Generator`` passed in.

Molecules (:func:`held_out_molecules`, :mod:`benchmarks.retrieval.molecules`):
atomic models of the real data held out of the encoder's training, and SYNTHETIC
assemblies from a seed family that training never uses.

Versions (:func:`make_versions`): one ``"reference"`` (the gallery entry) and query
versions per condition (see :data:`CONDITIONS`). Every version, the reference
included, is the molecule under its own uniformly random rotation; ``params``
records the query's rotation relative to the reference. The contour is set the
way a depositor would set it: ``map.header["recommended_contour"]``, which
``ingest.canonicalize`` picks up (contour source ``"map"``). Note that
``ingest.write_map`` does not store it: a benchmark that writes the maps to files
must pass the contour along (e.g. an EMDB-style header XML, or ``contour=``). The
structural conditions change the model first: :mod:`benchmarks.retrieval.incomplete`
(parts left out) and :mod:`benchmarks.retrieval.conformational` (a hinge motion).

This module is the benchmark's entry point: the names of those modules that the
benchmark uses are importable from here too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import gemmi
import numpy as np
from scipy import ndimage

from benchmarks.retrieval.conformational import (
    HINGE_ANGLE,
    HingeMotion,
    apply_motion,
    hinge_transform,
)
from benchmarks.retrieval.incomplete import (
    INCOMPLETE_FRACTION,
    Removal,
    choose_removal,
    remove_parts,
)
from benchmarks.retrieval.molecules import (
    KINDS,
    MAX_MODEL_ATOMS,
    SYNTHETIC_ATOM_CAPS,
    SYNTHETIC_GEOMETRY_BASE,
    SYNTHETIC_SEED_OFFSET,
    Molecule,
    held_out_molecules,
)
from ingest.contour import ANGSTROM3_PER_DALTON, background_level, contour_for_volume
from ingest.mapio import DensityMap
from ingest.simulate import SIGMA_FACTOR, model_atoms, simulate_map
from ingest.transform import random_rotation

#: Every condition; the first is the gallery entry, the others are queries.
CONDITIONS = (
    "reference",
    "rotation",
    "resolution",
    "box",
    "noise",
    "contour",
    "incomplete",
    "conformational",
)
QUERY_CONDITIONS = CONDITIONS[1:]

#: Resolution of the reference (gallery) version, Å.
REFERENCE_RESOLUTION = (4.0, 6.0)
#: Resolution range of the "resolution" condition, Å.
QUERY_RESOLUTION = (3.0, 12.0)
#: Noise sigma relative to the clean map's signal std (std of the density inside
#: the molecule, i.e. at or above the clean mass-based contour). The noise is
#: Gaussian, low-pass filtered to the map's resolution like real cryo-EM noise.
NOISE_LEVELS = {"low": 0.1, "medium": 0.25, "high": 0.5}
#: Depositor's contour factor range of the "contour" condition (x mass-based).
CONTOUR_FACTORS = ((0.7, 0.9), (1.1, 1.4))
#: Finest voxel used, Å, and the largest box, voxels (speed).
MIN_VOXEL = 0.8
MAX_BOX_VOXELS = 160**3


@dataclass(frozen=True, eq=False)
class Version:
    """One simulated deposition of a molecule.

    Attributes:
        molecule: the :class:`Molecule` name.
        group: its ground-truth group.
        condition: one of :data:`CONDITIONS`.
        params: how it was made (JSON-serialisable): always ``resolution`` (Å),
            ``voxel_size`` (Å), ``box`` (nx, ny, nz voxels), ``contour``, and for
            queries ``rotation_deg`` (angle to the reference's pose) and
            ``rotation_matrix`` (the query pose times the reference pose's
            inverse); plus what the condition changed (see :func:`make_versions`).
        map: the simulated map, contour in ``map.header["recommended_contour"]``.
        name: unique label ``<molecule>/<condition>/<n>``.
    """

    molecule: str
    group: str
    condition: str
    params: dict[str, Any]
    map: DensityMap
    name: str = ""

    @property
    def contour(self) -> float:
        """The depositor's contour level (``map.header["recommended_contour"]``)."""
        return float(self.map.header["recommended_contour"])

    def row(self) -> dict[str, Any]:
        """A JSON-serialisable description (everything but the density)."""
        return {
            "name": self.name,
            "molecule": self.molecule,
            "group": self.group,
            "condition": self.condition,
            "params": self.params,
        }


def _rotation_angle(r: np.ndarray) -> float:
    cos = (np.trace(r) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _default_voxel(resolution: float) -> float:
    return max(resolution / 3.0, 1.0)


def _default_padding(resolution: float, voxel: float) -> float:
    return 3.0 * SIGMA_FACTOR * resolution + 2.0 * voxel


def _fit_voxel(extent: float, padding: float, voxel: float) -> tuple[float, float]:
    """Shrink the padding, then coarsen the voxel, so a cube of side
    ``extent + 2 padding`` has at most ``MAX_BOX_VOXELS`` voxels."""
    side = round(MAX_BOX_VOXELS ** (1 / 3)) - 2
    if (extent + 2 * padding) / voxel > side:
        padding = max(0.0, (side * voxel - extent) / 2)
    if (extent + 2 * padding) / voxel > side:
        voxel = (extent + 2 * padding) / side
    return padding, voxel


def _simulate(
    structure: gemmi.Structure,
    rotation: np.ndarray,
    resolution: float,
    voxel: float,
    padding: float | None = None,
) -> DensityMap:
    transform = np.eye(4)
    transform[:3, :3] = rotation
    return simulate_map(
        structure,
        resolution,
        voxel_size=voxel,
        padding=padding,
        coords_transform=transform,
    )


def _into_box(
    dmap: DensityMap, shape_xyz: np.ndarray, offset_xyz: np.ndarray
) -> DensityMap:
    """Place the map in a larger box of ``shape_xyz`` voxels, its voxel [0,0,0] at
    ``offset_xyz`` (zero background), keeping physical positions."""
    shape_xyz = np.maximum(np.asarray(shape_xyz, int), np.array(dmap.shape[::-1]))
    offset_xyz = np.clip(np.asarray(offset_xyz, int), 0, shape_xyz - dmap.shape[::-1])
    after = shape_xyz - np.array(dmap.shape[::-1]) - offset_xyz
    pads = [(int(offset_xyz[a]), int(after[a])) for a in (2, 1, 0)]
    data = np.pad(dmap.data, pads, mode="constant")
    origin = np.asarray(dmap.origin) - offset_xyz * np.asarray(dmap.voxel_size)
    return replace(dmap, data=data, origin=tuple(float(o) for o in origin))


def _mass_volume(structure: gemmi.Structure) -> float:
    return float(model_atoms(structure)[2].sum()) * ANGSTROM3_PER_DALTON


def _finish(
    dmap: DensityMap,
    molecule: Molecule,
    condition: str,
    name: str,
    params: dict[str, Any],
    contour: float,
    note: str,
) -> Version:
    vs = dmap.voxel_size[0]
    params = {
        **params,
        "voxel_size": round(float(vs), 4),
        "box": [int(n) for n in dmap.shape[::-1]],
        "contour": float(contour),
    }
    params = json.loads(json.dumps(params))  # plain JSON types, fails loudly if not
    data = np.ascontiguousarray(dmap.data, dtype=np.float32)
    digest = hashlib.sha256(data.tobytes())
    digest.update(json.dumps(params, sort_keys=True).encode())
    header = dict(dmap.header)
    header["recommended_contour"] = float(contour)
    header["benchmark_version"] = name
    header["labels"] = list(header.get("labels", [])) + [
        f"SIMULATED benchmark version {name}"[:80]
    ]
    warnings = tuple(dmap.warnings) + (f"benchmark version ({condition}): {note}",)
    out = replace(
        dmap,
        data=data,
        path=f"simulated:{name}",
        sha256=digest.hexdigest(),
        header=header,
        warnings=warnings,
        simulated=True,
    )
    return Version(molecule.name, molecule.group, condition, params, out, name)


def make_versions(
    molecule: Molecule, rng: np.random.Generator, per_condition: int = 1
) -> list[Version]:
    """The reference and the query versions of a molecule (all simulated).

    The reference (gallery entry): 4-6 Å, voxel max(res/3, 1) Å, a random
    rotation, the default tight box, the mass-based contour. Queries, each under
    its own random rotation (``rotation_deg`` relative to the reference) and, unless
    the condition changes them, at the reference's resolution and voxel:

    * ``rotation``: a cubic box 10-30 Å larger than the molecule's extent with the
      molecule off-centre (``shift`` Å per axis, ``shift_norm``);
    * ``resolution``: 3-12 Å (stratified over ``per_condition``), voxel
      max(res/3, 1) Å; ``resolution_gap`` = query - reference, Å;
    * ``box``: a cubic box, tight (0-4 Å margin, density tails cut) or loose
      (20-50 Å), and a voxel of 0.8x-1.6x the reference's (within 0.8 Å .. res/2);
      ``padding``, ``voxel_ratio``;
    * ``noise``: one version per level of :data:`NOISE_LEVELS` per draw, in a
      cubic box with 15-25 Å of solvent: Gaussian noise low-pass filtered to the
      map's resolution, ``noise_sigma`` = level x ``signal_std`` (std inside the
      clean molecule); ``snr`` = signal variance / noise variance;
      ``contour_over_noise`` = clean contour / noise sigma; contour as a
      depositor would choose it on the noisy map: the level enclosing the mass
      volume, but at least 3 noise sigmas (box-edge estimate) above background;
    * ``contour``: the mass-based contour times ``contour_factor`` in 0.7-0.9 or
      1.1-1.4;
    * ``incomplete``: :func:`choose_removal` (``incomplete_mode``,
      ``residue_fraction``, ``atom_fraction``, ``removed``); contour from the
      remaining mass;
    * ``conformational``: :func:`hinge_transform` (``hinge_angle`` 15-40 deg,
      ``hinge_mode``, ``moved_fraction``, ``clashes``, ``hinge``).

    Args:
        molecule: the molecule.
        rng: all randomness: the versions are a function of its state and the
            molecule's name (so one seed gives different draws per molecule).
        per_condition: query versions per condition (noise: per level).

    Returns:
        ``[reference, *queries]`` in :data:`CONDITIONS` order.
    """
    if per_condition < 1:
        raise ValueError("per_condition must be >= 1")
    base = int(rng.integers(0, 2**62))
    key = int.from_bytes(hashlib.sha256(molecule.name.encode()).digest()[:8], "little")

    def child(condition: str, i: int) -> np.random.Generator:
        return np.random.default_rng([base, key, CONDITIONS.index(condition), i])

    structure = molecule.structure()
    xyz = model_atoms(structure)[0]
    volume = _mass_volume(structure)
    versions: list[Version] = []

    r = child("reference", 0)
    ref_res = float(r.uniform(*REFERENCE_RESOLUTION))
    ref_vs = _default_voxel(ref_res)
    ref_rot = random_rotation(r)

    def add(
        condition: str,
        tag: str,
        dmap: DensityMap,
        params: dict[str, Any],
        note: str,
        contour: float | None = None,
    ) -> None:
        """One more version, named ``<molecule>/<condition>/<tag>``; its contour
        is the simulation's mass-based one unless given."""
        level = dmap.header["recommended_contour"] if contour is None else contour
        name = f"{molecule.name}/{condition}/{tag}"
        versions.append(_finish(dmap, molecule, condition, name, params, level, note))

    ref = _simulate(structure, ref_rot, ref_res, ref_vs)
    add(
        "reference",
        "0",
        ref,
        {"resolution": round(ref_res, 3), "rotation_deg": 0.0},
        "gallery entry",
    )

    def pose(g: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        rot = random_rotation(g)
        rel = rot @ ref_rot.T
        return rot, {
            "rotation_deg": round(_rotation_angle(rel), 3),
            "rotation_matrix": np.round(rel, 6).tolist(),
        }

    def extent(rot: np.ndarray, coords: np.ndarray = xyz) -> float:
        return float(np.ptp(coords @ rot.T, axis=0).max())

    for i in range(per_condition):
        # rotation + shift in a larger cubic box
        g = child("rotation", i)
        rot, params = pose(g)
        pad0 = _default_padding(ref_res, ref_vs)
        half, vs = _fit_voxel(
            extent(rot) + 2 * pad0, float(g.uniform(10.0, 30.0)) / 2, ref_vs
        )
        dmap = _simulate(structure, rot, ref_res, vs, pad0)
        side = int(np.ceil(max(dmap.shape) + 2 * half / vs))
        room = side - np.array(dmap.shape[::-1])
        offset = np.floor(g.uniform(0, 1, 3) * (room + 1)).astype(int)
        dmap = _into_box(dmap, np.full(3, side), offset)
        shift = (offset - room / 2.0) * vs
        params.update(
            resolution=round(ref_res, 3),
            shift=np.round(shift, 3).tolist(),
            shift_norm=round(float(np.linalg.norm(shift)), 3),
        )
        add(
            "rotation",
            f"{i}",
            dmap,
            params,
            "rotated, shifted",
        )

    for i in range(per_condition):
        g = child("resolution", i)
        rot, params = pose(g)
        lo, hi = QUERY_RESOLUTION
        width = (hi - lo) / per_condition
        res = float(g.uniform(lo + i * width, lo + (i + 1) * width))
        dmap = _simulate(structure, rot, res, _default_voxel(res))
        params.update(resolution=round(res, 3), resolution_gap=round(res - ref_res, 3))
        add(
            "resolution",
            f"{i}",
            dmap,
            params,
            f"{res:.2f} A",
        )

    box_kind_offset = base % 2
    for i in range(per_condition):
        g = child("box", i)
        rot, params = pose(g)
        tight = (i + box_kind_offset) % 2 == 0
        padding = float(g.uniform(0.0, 4.0) if tight else g.uniform(20.0, 50.0))
        vs = float(np.clip(ref_vs * g.uniform(0.8, 1.6), MIN_VOXEL, ref_res / 2))
        padding, vs = _fit_voxel(extent(rot), padding, vs)
        dmap = _simulate(structure, rot, ref_res, vs, padding)
        side = max(dmap.shape)
        room = side - np.array(dmap.shape[::-1])
        dmap = _into_box(dmap, np.full(3, side), room // 2)
        params.update(
            resolution=round(ref_res, 3),
            box_kind="tight" if tight else "loose",
            padding=round(padding, 3),
            voxel_ratio=round(vs / ref_vs, 4),
        )
        add(
            "box",
            f"{i}",
            dmap,
            params,
            "box and voxel size changed",
        )

    for i in range(per_condition):
        for j, (level_name, level) in enumerate(NOISE_LEVELS.items()):
            g = child("noise", i * len(NOISE_LEVELS) + j)
            rot, params = pose(g)
            padding = float(g.uniform(15.0, 25.0))
            padding, vs = _fit_voxel(extent(rot), padding, ref_vs)
            clean = _simulate(structure, rot, ref_res, vs, padding)
            side = max(clean.shape)
            room = side - np.array(clean.shape[::-1])
            clean = _into_box(clean, np.full(3, side), room // 2)
            c0 = clean.header["recommended_contour"]
            signal_std = float(clean.data[clean.data >= c0].std())
            noise = g.standard_normal(clean.shape)
            noise = ndimage.gaussian_filter(
                noise, SIGMA_FACTOR * ref_res / vs, mode="wrap"
            )
            noise *= level * signal_std / max(float(noise.std()), 1e-12)
            data = (clean.data + noise).astype(np.float32)
            background, noise_est = background_level(data)
            by_mass = contour_for_volume(data, volume, vs**3)
            contour = max(by_mass, background + 3.0 * noise_est)
            params.update(
                resolution=round(ref_res, 3),
                noise_level=level_name,
                noise_relative=level,
                noise_sigma=float(level * signal_std),
                signal_std=signal_std,
                snr=round(1.0 / level**2, 3),
                contour_over_noise=round(float(c0) / (level * signal_std), 3),
                noise_filter="gaussian low-pass at the map resolution",
                padding=round(padding, 3),
                clean_contour=float(c0),
                contour_rule=(
                    "mass volume on the noisy map, floored at background + 3 "
                    "noise sigma"
                ),
                contour_floored=bool(contour > by_mass),
            )
            dmap = replace(clean, data=data)
            add(
                "noise",
                f"{i}-{level_name}",
                dmap,
                params,
                f"{level_name} noise ({level:g} x signal std)",
                contour=contour,
            )

    for i in range(per_condition):
        g = child("contour", i)
        rot, params = pose(g)
        lo, hi = CONTOUR_FACTORS[(i + base) % 2]
        factor = float(g.uniform(lo, hi))
        dmap = _simulate(structure, rot, ref_res, ref_vs)
        mass_contour = float(dmap.header["recommended_contour"])
        params.update(
            resolution=round(ref_res, 3),
            contour_factor=round(factor, 4),
            mass_contour=mass_contour,
        )
        add(
            "contour",
            f"{i}",
            dmap,
            params,
            f"contour x {factor:.2f}",
            contour=factor * mass_contour,
        )

    def structural(
        condition: str,
        change: Callable[
            [np.random.Generator], tuple[gemmi.Structure, dict[str, Any], str]
        ],
    ) -> None:
        """Versions of a changed structure: ``change(g)`` gives the structure, its
        params and a note; simulated at the reference's resolution."""
        for i in range(per_condition):
            g = child(condition, i)
            rot, params = pose(g)
            changed, extra, note = change(g)
            dmap = _simulate(changed, rot, ref_res, ref_vs)
            params.update(resolution=round(ref_res, 3), **extra)
            add(condition, f"{i}", dmap, params, note)

    def incomplete(g: np.random.Generator) -> tuple[gemmi.Structure, dict, str]:
        removal = choose_removal(structure, g)
        extra = {
            "incomplete_mode": removal.mode,
            "residue_fraction": round(removal.residue_fraction, 4),
            "atom_fraction": round(removal.atom_fraction, 4),
            "atoms_removed": int(removal.removed_atoms.sum()),
            "atoms_total": len(removal.removed_atoms),
            "removed": removal.detail,
        }
        note = f"{removal.mode}: {removal.residue_fraction:.0%} of residues removed"
        return remove_parts(structure, removal), extra, note

    def conformational(g: np.random.Generator) -> tuple[gemmi.Structure, dict, str]:
        motion = hinge_transform(structure, g)
        extra = {
            "hinge_angle": round(motion.angle, 3),
            "hinge_mode": motion.mode,
            "moved_fraction": round(motion.moved_fraction, 4),
            "clashes": motion.clashes,
            "hinge_pivot": np.round(motion.pivot, 3).tolist(),
            "hinge_axis": np.round(motion.axis, 5).tolist(),
            "hinge": motion.detail,
        }
        note = f"{motion.mode} hinge {motion.angle:.1f} deg"
        return apply_motion(structure, motion), extra, note

    structural("incomplete", incomplete)
    structural("conformational", conformational)
    return versions


__all__ = [
    "CONDITIONS",
    "CONTOUR_FACTORS",
    "HINGE_ANGLE",
    "INCOMPLETE_FRACTION",
    "KINDS",
    "MAX_BOX_VOXELS",
    "MAX_MODEL_ATOMS",
    "MIN_VOXEL",
    "NOISE_LEVELS",
    "QUERY_CONDITIONS",
    "QUERY_RESOLUTION",
    "REFERENCE_RESOLUTION",
    "SYNTHETIC_ATOM_CAPS",
    "SYNTHETIC_GEOMETRY_BASE",
    "SYNTHETIC_SEED_OFFSET",
    "HingeMotion",
    "Molecule",
    "Removal",
    "Version",
    "apply_motion",
    "choose_removal",
    "held_out_molecules",
    "hinge_transform",
    "make_versions",
    "remove_parts",
]
