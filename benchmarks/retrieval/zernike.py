"""3D Zernike descriptor (3DZD) baseline, as used by EM-SURFER and 3D-SURFER.

A map is binarised at its contour (a solid, not a surface shell), fitted into a cube
of side ``grid`` and described by the rotation-invariant norms of its 3D Zernike
moments up to ``order`` (20 -> 121 numbers, the EM-SURFER setting); maps are compared
by the Euclidean distance between descriptors.

**Backend.** The moments come from the PyPI package ``zernike-descriptors`` 0.1.0
(import name ``pyzernike``), pybind11 bindings to Novotni & Klein's C++ code
("Shape retrieval using 3D Zernike descriptors", CAD 36(11), 2004), the reference
implementation the 3D-SURFER / EM-SURFER descriptors derive from. Its wheel (built
from the sdist: PyPI offers no binary wheel for CPython 3.11 on Linux x86-64, so
installing it needs a C++ compiler with OpenMP; ~15 s) installs only the compiled
module ``pyzernike._core``: the documented ``from pyzernike import
ZernikeDescriptor`` wrapper is missing from the installed package, so this module
calls ``pyzernike._core.ZernikeDescriptorDouble(cube, order=...)`` directly (double
precision: float32 moments differ by ~0.3 % at order 20). That class takes a C-ordered
float cube (any side), computes the moments and ``get_descriptors()`` returns the
invariants ordered n = 0..order, l = n mod 2, ..., n (step 2):
``||(Z_nl^m)_{m=-l..l}||``.

**What the C++ code normalises by itself** (read from its sources):

* translation: the centre of mass of the cube's values;
* scale: coordinates are divided by twice the RMS distance of the non-zero voxels from
  that centre (Novotni-Klein's default, ``2 * ComputeScale_RadiusVar``), so the
  *unit ball of the Zernike basis has radius 2 x RMS radius*; non-zero voxels outside
  it are zeroed (in the caller's buffer, which it modifies in place) and ignored;
* moments are integrals in those scaled coordinates, so the descriptor does not
  depend on the grid spacing: it sees neither absolute size nor (like any set of
  (n, l) norms) handedness: a map and its mirror image get the same descriptor.

Its distance-to-centre loops pair the centre's x/y/z with the wrong array axes (the
original code already swapped two of them) and measure from a centre half a voxel
off (moments take voxel ``i`` as ``[i, i + 1)``, distances as ``i``), so its RMS
radius and cut-off ball are only right when the centre of mass lies at the middle
of the cube, and its cut is not symmetric about the object; and its cut-off loop
shares a variable between OpenMP threads (no effect seen: identical descriptors with
1, 2 and 8 threads). Steps 3-4 below make these harmless: the object is centred and
the C++ cut finds nothing to remove. What is left is a ~1e-3 relative error of the
RMS scale under exact 90/180 degree turns of the array (they are not bit-exact).

**What this module does** (:func:`zernike_descriptor`):

1. ``solid = volume >= contour`` (the repository's convention for "inside").
2. Centre of mass ``c`` and RMS radius ``r`` of the solid's voxel centres (every
   voxel weight 1), in physical units when ``voxel_size`` is given.
3. Resample onto a ``grid``^3 cube whose middle is ``c`` and whose voxel is
   ``2 r / (grid / 2 - 1)``: the ball of radius ``2 r`` (the descriptor's unit ball)
   just fits inside the cube, so all of the cube's resolution goes where the
   descriptor looks. The density (not the binary mask) is interpolated trilinearly
   and thresholded at the contour again (outside the box: the volume's minimum),
   which places the surface between voxels; interpolating the binary mask
   instead was 2-3x less rotation-invariant on the sample maps at grid 64.
4. Zero what lies outside that ball (what the C++ code would discard anyway), so what
   is kept does not depend on the orientation of the cube's corners; then, with a
   ball about the solid's own centre, also what the C++ code's skewed cut would
   remove (:func:`_within_cpp_ball`; nothing for a compact object).
5. Hand the binary cube to the C++ code, which re-derives the centre and the 2 x RMS
   scale on it (equal to steps 2-3 up to discretisation) and computes the moments.

Translation (padding, cropping the box), voxel size and rotation are therefore
normalised away; what remains is discretisation error. ``python -m
benchmarks.retrieval.zernike`` measures it on the sample maps in ``data/maps``.

Choice of grid: 64 (default) keeps order 20 accurate. On the sample maps the distance
between a map and its randomly rotated copies is 0.9-2.5 % of its mean distance to
the other maps at grid 64, 2-8 % at grid 32 and 0.5-1.6 % at grid 96 (which costs
3x more). A solid ball gives |Omega_000| within 0.6 % of the analytic value. Time
on a 2-core CPU: the C++ part ~10 ms at grid 32 or 64 (~35 ms at 96); a whole call
~11 ms (grid 32) / ~24 ms (grid 64) on the <= 70^3 sample maps, ~60 ms on a 256^3
box (the passes over the input volume dominate).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

try:
    from pyzernike._core import ZernikeDescriptorDouble as _ZernikeDescriptorDouble
except ImportError as exc:  # pragma: no cover - exercised only without the package
    raise ImportError(
        "benchmarks.retrieval.zernike needs the 3D Zernike descriptor package: "
        "pip install 'zernike-descriptors==0.1.0' (import name pyzernike; it builds "
        f"from source and needs a C++ compiler with OpenMP). Import failed: {exc}"
    ) from exc


def _restore_fp_environment() -> None:
    """Undo what loading pyzernike does to the whole process.

    Its extension is built with ``-ffast-math``, whose start-up code turns on
    flush-to-zero and denormals-are-zero in the x86 MXCSR register when the library
    loads: from then on every subnormal float in the process becomes 0 (numpy's
    ``nextafter(0, 1)`` returns 0, and hypothesis refuses to run). glibc's
    ``fesetenv(FE_DFL_ENV)`` (``FE_DFL_ENV`` is ``(const fenv_t *) -1``) puts the
    default floating-point environment back.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("m")
    if name is None:  # not glibc: nothing we know how to reset
        return
    ctypes.CDLL(name).fesetenv(ctypes.c_void_p(-1))


_restore_fp_environment()

#: Zernike order used by EM-SURFER / 3D-SURFER (121 invariants).
DEFAULT_ORDER = 20
#: Side of the cube the solid is voxelised into.
DEFAULT_GRID = 64
#: Smallest cube side accepted (below this order-20 moments are mostly noise).
MIN_GRID = 16


def descriptor_length(order: int = DEFAULT_ORDER) -> int:
    """Number of invariants: the (n, l) pairs with 0 <= l <= n <= order, n - l even."""
    return sum(n // 2 + 1 for n in range(order + 1))


def descriptor_labels(order: int = DEFAULT_ORDER) -> list[tuple[int, int]]:
    """The (n, l) of each descriptor component, in the descriptor's order."""
    return [(n, ell) for n in range(order + 1) for ell in range(n % 2, n + 1, 2)]


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def _voxel_steps(voxel_size: float | Sequence[float] | None) -> np.ndarray:
    """Voxel size along the array axes (z, y, x); ``voxel_size`` is given as x, y, z."""
    if voxel_size is None:
        return np.ones(3)
    v = np.atleast_1d(np.asarray(voxel_size, dtype=np.float64))
    if v.shape == (1,):
        v = np.repeat(v, 3)
    if v.shape != (3,) or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(
            "voxel_size must be one positive number or three (x, y, z), e.g. "
            f"DensityMap.voxel_size; got {voxel_size!r}"
        )
    return v[::-1].copy()


def _validate(volume: np.ndarray, contour: float) -> tuple[np.ndarray, float]:
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise ValueError(
            f"volume must be a 3D array (z, y, x); got shape {vol.shape}. Pass one "
            "map's density (DensityMap.data), not a slice or a stack of maps."
        )
    if vol.size == 0:
        raise ValueError(f"volume is empty (shape {vol.shape})")
    if vol.dtype.kind not in "biuf":
        raise ValueError(f"volume must hold real numbers; got dtype {vol.dtype}")
    vol = vol.astype(np.float32 if vol.dtype.itemsize <= 4 else np.float64, copy=False)
    finite = np.isfinite(vol)
    if not finite.all():
        bad = int(vol.size - np.count_nonzero(finite))
        raise ValueError(
            f"volume has {bad} NaN/Inf voxel(s) out of {vol.size}; replace them "
            "before computing a descriptor, e.g. np.nan_to_num(volume, nan=background,"
            " posinf=background, neginf=background) with the map's background level"
        )
    try:
        level = float(contour)
    except (TypeError, ValueError):
        raise ValueError(f"contour must be a number; got {contour!r}") from None
    if not np.isfinite(level):
        raise ValueError(
            f"contour must be finite; got {contour!r}. Use the header's recommended "
            "level or ingest.contour.auto_contour(volume)."
        )
    return vol, level


def voxelise(
    volume: np.ndarray,
    contour: float,
    grid: int = DEFAULT_GRID,
    voxel_size: float | Sequence[float] | None = None,
) -> np.ndarray:
    """Steps 1-4 of the module docstring: the binary ``grid``^3 cube given to pyzernike.

    The solid's centre of mass sits at the cube's middle, ``(grid - 1) / 2``, and the
    ball of radius twice its RMS radius fills the cube (radius ``grid / 2 - 1``
    voxels); nothing outside that ball is kept.

    Returns:
        ``float64`` array ``(grid, grid, grid)`` of 0 and 1, axes in the input's order.

    Raises:
        ValueError: see :func:`zernike_descriptor`.
    """
    grid = _check_int("grid", grid, MIN_GRID)
    vol, level = _validate(volume, contour)
    steps = _voxel_steps(voxel_size)
    mask = vol >= level
    count = int(np.count_nonzero(mask))
    lo, hi = float(vol.min()), float(vol.max())
    if count == 0:
        raise ValueError(
            f"no voxel is at or above the contour {level:g} (volume range "
            f"[{lo:g}, {hi:g}]); pass a contour below the maximum, e.g. the header's "
            "recommended level or ingest.contour.auto_contour(volume)"
        )
    if count == vol.size:
        raise ValueError(
            f"every voxel is at or above the contour {level:g} (volume range "
            f"[{lo:g}, {hi:g}]): the solid would be the box itself; pass a contour "
            "above the background level"
        )
    # centre of mass and RMS radius of the solid from its three axis projections
    center = np.empty(3)
    sum_sq = 0.0
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        proj = mask.sum(axis=others, dtype=np.int64).astype(np.float64)
        index = np.arange(mask.shape[axis], dtype=np.float64)
        center[axis] = proj @ index / count
        sum_sq += proj @ ((index - center[axis]) * steps[axis]) ** 2
    del mask
    rms = float(np.sqrt(sum_sq / count))
    if rms <= 0.0:
        raise ValueError(
            f"only one voxel is at or above the contour {level:g}: the solid has no "
            "extent to describe; pass a lower contour"
        )
    radius = grid / 2.0 - 1.0  # the unit ball (2 x RMS radius), in output voxels
    middle = (grid - 1) / 2.0
    zoom = (2.0 * rms / radius) / steps  # input voxels per output voxel, per axis
    sampled = ndimage.affine_transform(
        vol,
        zoom,
        offset=center - middle * zoom,
        output_shape=(grid, grid, grid),
        order=1,
        mode="grid-constant",
        cval=lo,  # outside the box: the volume's minimum (below the contour)
    )
    solid = sampled >= level
    z, y, x = np.ogrid[:grid, :grid, :grid]
    solid &= (z - middle) ** 2 + (y - middle) ** 2 + (x - middle) ** 2 <= radius**2
    if not solid.any():
        raise ValueError(
            f"the solid at contour {level:g} ({count} voxel(s), isolated specks) "
            "vanished when resampled; pass a lower contour"
        )
    return _within_cpp_ball(solid).astype(np.float64)


def _within_cpp_ball(solid: np.ndarray, max_rounds: int = 50) -> np.ndarray:
    """Remove, with a ball about the true centre, all that the C++ code would cut.

    The C++ code zeroes voxels farther than twice its RMS radius from its centre,
    but measures both with the centre half a voxel off on every axis (moments use
    voxel ``i`` = ``[i, i + 1)``, distances use ``i``) and with the centre's
    coordinates paired with the wrong array axes, so its cut is not symmetric about
    the object and a 90 or 180 degree turn of the array changes what it keeps. This
    reproduces its centre and RMS radius, then keeps only the ball about the solid's
    true centre of mass that lies inside the C++ ball (radius: twice the C++ RMS
    radius minus the distance between the two centres, ~0.87 voxel), and repeats
    (cutting lowers the RMS radius) until the C++ cut has nothing left to remove.
    """
    grid = solid.shape[0]
    index = np.arange(grid, dtype=np.float64)
    z, y, x = np.ogrid[:grid, :grid, :grid]
    for _ in range(max_rounds):
        count = np.count_nonzero(solid)
        proj = [
            solid.sum(axis=tuple(b for b in range(3) if b != a), dtype=np.int64)
            for a in range(3)
        ]
        com = np.array([p @ index for p in proj]) / count  # array axes 0, 1, 2
        # the C++ centre: (fastest, middle, slowest) axis, +0.5 voxel
        cpp = com[::-1] + 0.5
        # ComputeScale_RadiusVar pairs axis 0 with cpp[0], axis 2 with cpp[1] and
        # axis 1 with cpp[2]; NormalizeGrid cuts about (cpp[2], cpp[0], cpp[1])
        sum_sq = (
            proj[0] @ (index - cpp[0]) ** 2
            + proj[2] @ (index - cpp[1]) ** 2
            + proj[1] @ (index - cpp[2]) ** 2
        )
        cut_center = np.array([cpp[2], cpp[0], cpp[1]])
        keep = 2.0 * np.sqrt(sum_sq / count) - np.linalg.norm(cut_center - com)
        outside = solid & (
            (z - com[0]) ** 2 + (y - com[1]) ** 2 + (x - com[2]) ** 2 > keep**2
        )
        if not outside.any():
            break
        solid = solid & ~outside
    return solid


def zernike_descriptor(
    volume: np.ndarray,
    contour: float,
    order: int = DEFAULT_ORDER,
    grid: int = DEFAULT_GRID,
    voxel_size: float | Sequence[float] | None = None,
) -> np.ndarray:
    """3D Zernike descriptor of the solid ``volume >= contour``.

    Args:
        volume: density, any box shape, axes (z, y, x) (``DensityMap.data``).
        contour: the level that defines the molecule (inside: ``>= contour``).
        order: maximal Zernike order n (20: EM-SURFER's 121 invariants).
        grid: side of the cube the solid is voxelised into (>= 16; 64 keeps order 20
            accurate, see the module docstring).
        voxel_size: voxel size (x, y, z) or one number; needed only for anisotropic
            voxels (the descriptor does not depend on the absolute size).

    Returns:
        ``float64`` array of :func:`descriptor_length` ``(order)`` values (121 for
        order 20), the invariants ordered as :func:`descriptor_labels`. Invariant to
        rotation, translation, box size and voxel size up to discretisation error;
        mirror images get the same descriptor.

    Raises:
        ValueError: the volume is not 3D, holds NaN/Inf, or nothing (or everything)
            is at or above the contour; the contour is not finite; ``order`` or
            ``grid`` is not a valid integer. The message says how to fix it.
    """
    order = _check_int("order", order, 1)
    cube = voxelise(volume, contour, grid=grid, voxel_size=voxel_size)
    # the C++ code zeroes voxels outside its unit ball in place: ``cube`` is ours
    invariants = _ZernikeDescriptorDouble(cube, order=order).get_descriptors()
    descriptor = np.array(invariants, dtype=np.float64)
    if descriptor.shape != (descriptor_length(order),) or not np.all(
        np.isfinite(descriptor)
    ):
        raise RuntimeError(
            f"pyzernike returned {descriptor.shape} values, finite: "
            f"{bool(np.all(np.isfinite(descriptor)))}; expected "
            f"{descriptor_length(order)} finite values"
        )
    return descriptor


def zernike_distance(a: np.ndarray, b: np.ndarray) -> float | np.ndarray:
    """Euclidean distance between descriptors (the 3D-SURFER / EM-SURFER metric).

    ``a`` and ``b`` broadcast along their leading axes (e.g. a ``(n, 121)`` database
    against one ``(121,)`` query gives ``n`` distances); two single descriptors give
    a float.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim == 0 or b.ndim == 0 or a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"descriptors must share their last axis; got shapes {a.shape} and "
            f"{b.shape} (were they computed with the same order?)"
        )
    distance = np.linalg.norm(a - b, axis=-1)
    return float(distance) if distance.ndim == 0 else distance


# --------------------------------------------------------------------------- check


SAMPLE_MAPS = (
    "emd_1832.map",
    "emd_21457_seg.mrc",
    "emd_3001.map.gz",
    "emd_3197.map.gz",
    "emd_5625.map",
    "emd_6824.mrc",
)


def _load_samples(folder: str):  # noqa: ANN202 - list of (name, DensityMap, contour)
    from pathlib import Path

    from ingest import read_header, read_map
    from ingest.canonical import choose_contour
    from ingest.header import emdb_id_from_name

    out = []
    for name in SAMPLE_MAPS:
        dmap = read_map(Path(folder) / name)
        meta = None
        emdb = emdb_id_from_name(name)
        for xml in Path(folder).glob("*.xml"):
            if emdb and emdb_id_from_name(xml.name) == emdb:
                meta = read_header(xml)
        level, source = choose_contour(dmap, None, meta)
        out.append((name, dmap, level, source))
    return out


def _pad_min(dmap, width: int = 2):  # noqa: ANN001, ANN202
    """The map in a box ``width`` voxels larger on every side, filled with its minimum.

    :func:`ingest.transform.rotate_map` pads with the median of the first z slice;
    for a map whose density fills its box (EMD-3197 at its automatic contour) that
    value is above the contour and the rotated copy becomes a solid block.
    """
    data = np.pad(dmap.data, width, constant_values=float(dmap.data.min()))
    origin = tuple(
        o - width * v for o, v in zip(dmap.origin, dmap.voxel_size, strict=True)
    )
    return dataclasses.replace(dmap, data=data, origin=origin)


def check_invariance(
    folder: str = "data/maps",
    rotations: int = 5,
    seed: int = 0,
    order: int = DEFAULT_ORDER,
    grid: int = DEFAULT_GRID,
) -> dict:
    """Rotation / voxel-size / padding invariance on the sample maps (see ``main``)."""
    from ingest import random_rotation, rotate_map

    samples = _load_samples(folder)
    names = [s[0] for s in samples]

    def describe(dmap, level):  # noqa: ANN001, ANN202
        return zernike_descriptor(dmap.data, level, order, grid, dmap.voxel_size)

    t0 = time.perf_counter()
    orig = np.array([describe(d, c) for _, d, c, _ in samples])
    per_descriptor = (time.perf_counter() - t0) / len(samples)
    n = len(samples)
    between = np.array(
        [[zernike_distance(orig[i], orig[j]) for j in range(n)] for i in range(n)]
    )
    mean_between = float(between[np.triu_indices(n, 1)].mean())
    rng = np.random.default_rng(seed)
    rots = [random_rotation(rng) for _ in range(rotations)]
    result: dict = {
        "maps": {s[0]: {"contour": s[2], "contour_source": s[3]} for s in samples},
        "order": order,
        "grid": grid,
        "seconds_per_descriptor_sample_maps": per_descriptor,
        "mean_distance_between_maps": mean_between,
    }
    for variant in ("rotate_map", "pad_then_rotate_map"):
        same, hits, per_map = [], [], {}
        for i, (name, dmap, level, _) in enumerate(samples):
            src = dmap if variant == "rotate_map" else _pad_min(dmap)
            d_i = []
            for rot in rots:
                desc = describe(rotate_map(src, rot), level)
                dist = zernike_distance(orig, desc)
                d_i.append(float(dist[i]))
                hits.append(int(np.argmin(dist)) == i)
            same += d_i
            others = np.delete(between[i], i).mean()
            per_map[name] = float(np.mean(d_i) / others)
        result[variant] = {
            "mean_distance_same_map": float(np.mean(same)),
            "ratio_same_over_between": float(np.mean(same) / mean_between),
            "nn_accuracy": float(np.mean(hits)),
            "per_map_ratio": per_map,
        }
    eye = np.eye(3)
    scale_rows = {}
    for factor in (0.5, 2.0):
        ratios = {}
        for i, (name, dmap, level, _) in enumerate(samples):
            v = min(dmap.voxel_size) * factor
            moved = rotate_map(_pad_min(dmap), eye, voxel_size=v, pad=0.6, order=1)
            dist = zernike_distance(orig[i], describe(moved, level))
            ratios[name] = float(dist / np.delete(between[i], i).mean())
        scale_rows[f"voxel_size_x{factor:g}"] = ratios
    result["voxel_size_ratio"] = scale_rows
    pads = {}
    for i, (name, dmap, level, _) in enumerate(samples):
        low = float(dmap.data.min())
        padded = np.pad(dmap.data, ((3, 11), (0, 7), (20, 1)), constant_values=low)
        desc = zernike_descriptor(padded, level, order, grid, dmap.voxel_size)
        pads[name] = float(zernike_distance(orig[i], desc))
    result["padding_distance"] = pads
    timing = {}
    big = np.zeros((256, 256, 256), dtype=np.float32)
    big[60:200, 90:170, 40:220] = 1.0
    for g in (32, 64):
        for label, vol in (("sample_maps", None), ("256^3", big)):
            t0 = time.perf_counter()
            if vol is None:
                for _, d, c, _ in samples:
                    zernike_descriptor(d.data, c, order, g, d.voxel_size)
                dt = (time.perf_counter() - t0) / n
            else:
                zernike_descriptor(vol, 0.5, order, g)
                dt = time.perf_counter() - t0
            timing[f"grid{g}_{label}"] = dt
    cube = voxelise(samples[-1][1].data, samples[-1][2], grid)
    t0 = time.perf_counter()
    _ZernikeDescriptorDouble(cube, order=order).get_descriptors()
    timing[f"grid{grid}_cpp_only"] = time.perf_counter() - t0
    result["seconds_per_descriptor"] = timing
    result["names"] = names
    return result


def _print(result: dict) -> None:
    print(f"order {result['order']}, grid {result['grid']}")
    for name, info in result["maps"].items():
        print(f"  {name:20s} contour {info['contour']:.4g} ({info['contour_source']})")
    between = result["mean_distance_between_maps"]
    print(f"mean distance between different maps: {between:.4f}")
    for variant in ("rotate_map", "pad_then_rotate_map"):
        r = result[variant]
        print(
            f"{variant}: same-map {r['mean_distance_same_map']:.4f}  ratio "
            f"{r['ratio_same_over_between']:.3f}  NN accuracy {r['nn_accuracy']:.2f}"
        )
        for name, ratio in r["per_map_ratio"].items():
            print(f"    {name:20s} same/between {ratio:.3f}")
    for label, ratios in result["voxel_size_ratio"].items():
        print(
            f"{label}: "
            + "  ".join(f"{k.split('.')[0]} {v:.3f}" for k, v in ratios.items())
        )
    print(
        "padding distance: "
        + "  ".join(
            f"{k.split('.')[0]} {v:.1e}" for k, v in result["padding_distance"].items()
        )
    )
    for label, secs in result["seconds_per_descriptor"].items():
        print(f"time per descriptor {label}: {secs * 1000:.1f} ms")


def main(argv: Sequence[str] | None = None) -> dict:
    """``python -m benchmarks.retrieval.zernike``: print the invariance check."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", default="data/maps")
    parser.add_argument("--rotations", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--order", type=int, default=DEFAULT_ORDER)
    parser.add_argument("--grid", type=int, default=DEFAULT_GRID)
    args = parser.parse_args(argv)
    result = check_invariance(
        args.maps, args.rotations, args.seed, args.order, args.grid
    )
    _print(result)
    return result


if __name__ == "__main__":
    main()
