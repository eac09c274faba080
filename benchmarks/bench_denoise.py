"""Benchmark: denoising, every method side by side, Pearson and FSC against the truth.

Two sets of maps, each at ``--noise`` levels (Gaussian noise of sigma = level x
the truth's standard deviation over the whole box):

* **held-out SIMULATED maps**: simulated at ``--resolution`` from atomic models
  of molecules held out of the encoder's, the prior's and the U-Net's training
  (the test groups of :mod:`encoder.training_data.dataset`); the truth is the
  clean simulated map.
* **real sample maps** (``data/maps``, real EMDB maps) with noise added; their
  "truth" is the map itself as deposited, before the added noise (it has its
  own noise). Five of the six are in the training split (the encoder, the
  prior and the U-Net saw views of them); each row says which.

Methods, all on the noisy map's own grid: ``noisy`` (the input); ``gaussian
(oracle sigma)``: a Gaussian low-pass whose sigma (voxels) is the best of
:data:`SIGMAS` against the truth, per map: an upper bound of the classical
filter, which no user could choose; ``autoencoder``: the encoder's
reconstruction of the noisy map (no prior); ``prior s=S``: the prior at
strength S, the reconstruction alone; ``... + data``: the same made consistent
with the noisy map (:func:`swan_index.generate.consistent_on_input_grid`, what
``swan denoise`` writes); ``unet``: a supervised 3D U-Net trained on the
encoder's training split for a fixed CPU budget (:mod:`benchmarks.unet_denoiser`;
its budget and steps are in the result). Measures: Pearson correlation with the
truth over the whole box, and the resolution (Å) at which the FSC with the truth
falls below 0.5 (:func:`swan_index.shells.fsc_resolution`; smaller is better).
The encoder's methods canonicalize the noisy map at the truth's contour (the
depositor's level, given as ``swan denoise --contour`` would be).

``--training-split`` runs the same on SIMULATED maps of training-split
molecules and on real training-split maps that are not sample maps: what the
data-consistency margins and the default strength were chosen on (never the
maps reported); ``--solvent-margin M ... --rounds R ...`` adds ``swan
denoise``'s path with those settings, to compare them. ``--mean-of N`` adds
two more at the default strength, made consistent the same way: the mean of N
draws of the prior (an estimate of the posterior mean, which has a lower
expected error than one draw), and the mean over N of the canonical volume's
axis flips (each reconstructed, flipped back; N <= 8), the test-time
augmentation of image denoisers. ``--small-box SIDE ...`` adds each real map
resampled into a box whose longest side is SIDE voxels (a small box of large
voxels, as a small map such as ``emd_3197``'s 20^3 is), reported apart, and
each SIMULATED map the same way after them (reported apart too);
``--with-own-pieces`` adds ``swan denoise``'s path with the noisy map's own
pieces at the contour (dust removed) counted as the molecule too, which keeps
a thin molecule that smoothing hides from being flattened as solvent: always,
and only when they hold more than 3 times the molecule found without them
(tried and left out: ``docs/prior.md``). ``--ceilings`` adds bounds that
use the clean map (:mod:`benchmarks.denoise_ceilings`): how far the prior's
route can go with this encoder. ``--contour-factor F ...`` adds ``swan
denoise``'s path with the noisy map canonicalized below its contour, F of the
way from its median up to it (tried and left out: ``docs/prior.md``).

    $ python -m benchmarks.bench_denoise --unet runs/unet_denoiser.pt
    $ python -m benchmarks.bench_denoise --training-split \\
        --strength 0 0.3 0.5 --solvent-margin 2 4 8 --rounds 0 2 5
    $ python -m benchmarks.bench_denoise --training-split --mean-of 8
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from benchmarks import unet_denoiser
from benchmarks.bench_prior import MODELS, SHARED_MODELS, held_out
from benchmarks.common import ROOT, RunRecord, add_out_argument, save_result
from benchmarks.denoise_ceilings import ceiling_maps
from encoder.training_data.dataset import DatasetConfig, group_of, split_of
from ingest.canonical import volume_correlation
from ingest.contour import auto_contour
from ingest.errors import IngestError
from ingest.mapio import DensityMap, read_map
from ingest.simulate import simulate_map
from swan_index.commands.denoise import DEFAULT_STRENGTH
from swan_index.generate import (
    DEFAULT_PRIOR,
    Generator,
    consistent_on_input_grid,
    noisy_contour,
    on_input_grid,
)
from swan_index.map_encoder import DEFAULT_CHECKPOINT
from swan_index.shells import OUTSIDE_WEIGHTS, ROUNDS, fsc_resolution

#: Gaussian widths (voxels) the oracle chooses from.
SIGMAS = tuple(np.round(np.arange(0.25, 4.01, 0.25), 2))
#: Training-split molecules for ``--training-split`` (choosing parameters).
TRAINING_MODELS = tuple(SHARED_MODELS / n for n in ("3MFP.pdb", "2DQJ.pdb", "1A5T.pdb"))
#: Real training-split maps that are not sample maps, for ``--training-split``.
TRAINING_REAL_MAPS = tuple(
    SHARED_MODELS.parent / "maps" / n
    for n in ("emd_5170.map", "emd_2513.mrc", "emd_5168.map")
)
#: The real sample maps (``data/maps``).
REAL_MAPS = tuple(
    sorted(
        p
        for p in (ROOT / "data" / "maps").iterdir()
        if p.name.endswith((".map", ".mrc", ".map.gz"))
    )
)


def measure(out: np.ndarray, truth: DensityMap) -> dict[str, float]:
    """Pearson with the truth and the FSC = 0.5 resolution (Å)."""
    return {
        "pearson": volume_correlation(out, truth.data),
        "fsc05": fsc_resolution(out, truth.data, truth.voxel_size),
    }


def oracle_gaussian(noisy: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, float]:
    """The Gaussian low-pass of ``noisy`` closest to ``truth`` (Pearson), and
    its sigma (voxels)."""
    best, out, sigma = -2.0, noisy, 0.0
    for s in SIGMAS:
        smooth = ndimage.gaussian_filter(noisy, s)
        r = volume_correlation(smooth, truth)
        if r > best:
            best, out, sigma = r, smooth, float(s)
    return out, sigma


#: The canonical volume's axis flips (``()``: none), for ``--mean-of``.
FLIPS = tuple(a for r in range(4) for a in itertools.combinations((0, 1, 2), r))


def mean_over_flips(gen: Generator, cv: Any, strength: float, n: int) -> np.ndarray:
    """The mean of the reconstructions of the first ``n`` of :data:`FLIPS` of
    ``cv``'s canonical volume, each flipped back."""
    out = []
    for axes in FLIPS[:n]:
        flipped = replace(cv, values=np.flip(cv.values, axes).copy())
        volume = gen.reconstruct(flipped, strength, seed=0)[0]
        out.append(np.flip(volume, axes))
    return np.mean(out, axis=0)


def in_small_box(dmap: DensityMap, side: int) -> DensityMap:
    """``dmap`` resampled (linearly) onto a grid whose longest side is ``side``
    voxels, the voxels larger by as much: a small box of large voxels."""
    zoom = side / max(dmap.shape)
    data = ndimage.zoom(dmap.data, zoom, order=1).astype(np.float32)
    size = tuple(
        v * s / n
        for v, s, n in zip(
            dmap.voxel_size, dmap.shape[::-1], data.shape[::-1], strict=True
        )
    )
    return replace(dmap, data=data, voxel_size=size, path=f"{dmap.path}@{side}")


def denoise_all(
    gen: Generator,
    unet: Any,
    truth: DensityMap,
    noise: float,
    strengths: list[float],
    rng: np.random.Generator,
    variants: list[tuple[int, int]] = (),
    auto: bool = False,
    mean_of: int = 0,
    with_own_pieces: bool = False,
    outside: tuple[str, ...] = (),
    uncalibrated: bool = False,
    ceilings: bool = False,
    contour_factors: tuple[float, ...] = (),
) -> dict[str, Any]:
    """Every method on ``truth`` plus noise of ``noise`` x its std: a row. The
    noisy map is canonicalized at the truth's contour (the depositor's level,
    as ``swan denoise --contour`` takes it; the automatic level of a noisy map
    can be far off). ``variants``: more ``(solvent margin, rounds)`` of making
    the default strength's map consistent, for choosing them. ``auto``: ``swan
    denoise`` without a contour too, the map carrying none: at the automatic
    level of the noisy map itself, and at :func:`noisy_contour`'s (what ``swan
    denoise`` takes), with both levels in the row. ``mean_of``: the default
    strength's map also as the mean of that many draws and of that many flips
    (module docstring). ``with_own_pieces``: the default strength's map also
    made consistent with the noisy map's own pieces at the contour counted as
    the molecule, always and when missed (module docstring). ``outside``: the
    default strength's map also made consistent with the data's weight outside
    the molecule's mask measured each of these ways
    (:data:`swan_index.shells.OUTSIDE_WEIGHTS`). ``uncalibrated``: the default
    strength's map also made consistent without first fitting it to the noisy
    map's units (what ``swan denoise`` did before). ``ceilings``: the
    bounds of :mod:`benchmarks.denoise_ceilings` too (they use the clean map;
    not methods). ``contour_factors``: the default strength's path with the
    noisy map canonicalized at a level between its background (median) and
    the contour, that share of the way up, as well."""
    sd = float(truth.data.std())
    data = truth.data + rng.normal(0, noise * sd, truth.shape).astype(np.float32)
    noisy = replace(truth, data=data.astype(np.float32), path=f"noisy:{truth.path}")
    contour = gen.canonical(truth).contour
    cv = gen.canonical(noisy, contour)
    row: dict[str, Any] = {"noise": noise, "shape": list(truth.shape)}
    row["contour"] = contour
    scores = {"noisy": measure(noisy.data, truth)}
    smooth, row["oracle_sigma_voxels"] = oracle_gaussian(noisy.data, truth.data)
    scores["gaussian (oracle sigma)"] = measure(smooth, truth)
    for s in sorted({0.0, *strengths}):
        volume = gen.reconstruct(cv, s or None, seed=0)[0]
        name = _name(s)
        scores[name] = measure(on_input_grid(volume, cv, noisy), truth)
        consistent = consistent_on_input_grid(volume, cv, noisy)
        scores[f"{name} + data"] = measure(consistent, truth)
        for margin, rounds in variants if s == DEFAULT_STRENGTH else ():
            made = consistent_on_input_grid(volume, cv, noisy, margin, rounds)
            label = f"{name} + data (margin {margin}, {rounds} rounds)"
            scores[label] = measure(made, truth)
    if with_own_pieces:
        volume = gen.reconstruct(cv, DEFAULT_STRENGTH, seed=0)[0]
        for rule, label in ((True, "always"), ("missed", "when missed")):
            name = f"{_name(DEFAULT_STRENGTH)} + data, the map's own pieces {label}"
            made = consistent_on_input_grid(volume, cv, noisy, own_pieces=rule)
            scores[name] = measure(made, truth)
    if uncalibrated:
        volume = gen.reconstruct(cv, DEFAULT_STRENGTH, seed=0)[0]
        name = f"{_name(DEFAULT_STRENGTH)} + data, uncalibrated"
        made = consistent_on_input_grid(volume, cv, noisy, calibrate=False)
        scores[name] = measure(made, truth)
    for way in outside:
        volume = gen.reconstruct(cv, DEFAULT_STRENGTH, seed=0)[0]
        name = f"{_name(DEFAULT_STRENGTH)} + data, outside weighed {way}"
        made = consistent_on_input_grid(volume, cv, noisy, outside=way)
        scores[name] = measure(made, truth)
    for factor in contour_factors:
        background = float(np.median(noisy.data))
        level = background + factor * (contour - background)
        name = f"{_name(DEFAULT_STRENGTH)} + data, contour x{factor:g}"
        try:
            cv_f = gen.canonical(noisy, level)
        except IngestError as exc:
            row[f"{name} error"] = str(exc)
            scores[name] = {"pearson": float("nan"), "fsc05": float("nan")}
            continue
        volume = gen.reconstruct(cv_f, DEFAULT_STRENGTH, seed=0)[0]
        scores[name] = measure(consistent_on_input_grid(volume, cv_f, noisy), truth)
    if ceilings:
        bounds = ceiling_maps(gen, truth, noisy, cv, contour, DEFAULT_STRENGTH)
        scores.update({label: measure(m, truth) for label, m in bounds.items()})
    if mean_of > 1:
        name = _name(DEFAULT_STRENGTH)
        averaged = {
            f"{name} mean of {mean_of} draws + data": gen.reconstruct(
                cv, DEFAULT_STRENGTH, n=mean_of, seed=0
            ).mean(0),
            f"{name} mean of {min(mean_of, len(FLIPS))} flips + data": (
                mean_over_flips(gen, cv, DEFAULT_STRENGTH, mean_of)
            ),
        }
        for label, volume in averaged.items():
            made = consistent_on_input_grid(volume, cv, noisy)
            scores[label] = measure(made, truth)
    if auto:
        bare = replace(noisy, header={})  # no level carried: the automatic one
        levels = {
            "automatic contour": auto_contour(bare.data),
            "automatic contour of the smoothed map": noisy_contour(bare),
        }
        for label, level in levels.items():
            row[f"contour, {label}"] = level
            name = f"{_name(DEFAULT_STRENGTH)} + data, {label}"
            try:
                cv_auto = gen.canonical(bare, level)
            except IngestError as exc:  # what swan denoise would say, and stop
                row[f"{name} error"] = str(exc)
                scores[name] = {"pearson": float("nan"), "fsc05": float("nan")}
                continue
            volume = gen.reconstruct(cv_auto, DEFAULT_STRENGTH, seed=0)[0]
            made = consistent_on_input_grid(volume, cv_auto, bare)
            scores[name] = measure(made, truth)
    if unet is not None:
        scores["unet"] = measure(unet_denoiser.denoise(unet, noisy.data), truth)
    for method, m in scores.items():
        row[f"{method} pearson"] = m["pearson"]
        row[f"{method} fsc05"] = m["fsc05"]
    return row


def summarise(rows: list[dict[str, Any]], levels: list[float]) -> dict[str, Any]:
    """Per noise level and method: mean Pearson and mean FSC = 0.5 resolution
    (over the maps it made; ``failed``: how many it refused)."""
    methods = [k.removesuffix(" pearson") for k in rows[0] if k.endswith(" pearson")]
    out: dict[str, Any] = {}
    for level in levels:
        these = [r for r in rows if r["noise"] == level]
        out[str(level)] = {}
        for m in methods:
            pearson = np.array([r[f"{m} pearson"] for r in these], float)
            fsc = np.array([r[f"{m} fsc05"] for r in these], float)
            failed = int(np.isnan(pearson).sum())  # no map made (one line said why)
            out[str(level)][m] = {
                "pearson": float(np.nanmean(pearson)) if failed < len(these) else None,
                "fsc05_angstrom": float(np.nanmean(fsc))
                if failed < len(these)
                else None,
                **({"failed": failed} if failed else {}),
            }
    return out


def _name(strength: float) -> str:
    return "autoencoder" if strength == 0 else f"prior s={strength:g}"


def goal(summary: dict[str, Any], strength: float) -> dict[str, Any]:
    """Per level: ``swan denoise`` at its default ``strength`` against (a) noisy,
    (b) the oracle Gaussian, (c) the autoencoder and (d) the U-Net: Pearson
    margins, and Å of FSC = 0.5 resolution gained (positive = better)."""
    ours = f"{_name(strength)} + data"
    out = {}
    for level, methods in summary.items():
        margins = {}
        for base in ("noisy", "gaussian (oracle sigma)", "autoencoder", "unet"):
            if base in methods:
                margins[base] = {
                    "pearson": methods[ours]["pearson"] - methods[base]["pearson"],
                    "fsc05_angstrom_gained": methods[base]["fsc05_angstrom"]
                    - methods[ours]["fsc05_angstrom"],
                }
        out[level] = {"method": ours, "margin_over": margins}
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    record = RunRecord()
    gen = Generator.load(args.checkpoint, args.prior)
    unet, unet_info = None, None
    if args.unet:
        unet, unet_info = unet_denoiser.load(args.unet)
    rng = np.random.default_rng(args.seed)
    cfg = DatasetConfig()
    if args.training_split:
        paths = [Path(m) for m in TRAINING_MODELS]
        for p in paths:
            if split_of(group_of(p), "simulated", cfg) != "train":
                raise ValueError(f"{p}: not in the training split")
    else:
        paths = held_out([Path(m) for m in args.models])
    simulated, real = [], []
    variants = [(m, r) for m in args.solvent_margin for r in args.rounds]

    def denoise(truth: DensityMap, noise: float) -> dict[str, Any]:
        settings = (
            args.strength,
            rng,
            variants,
            args.auto,
            args.mean_of,
            args.with_own_pieces,
            tuple(args.outside),
            args.uncalibrated,
            args.ceilings,
            tuple(args.contour_factor),
        )
        return denoise_all(gen, unet, truth, noise, *settings)

    for path in paths:
        truth = simulate_map(path, args.resolution)
        for noise in args.noise:
            row = denoise(truth, noise)
            simulated.append({"map": f"SIMULATED {path.name}", **row})
            print(_brief(simulated[-1]), flush=True)
    record.mark("simulated done")
    reals = TRAINING_REAL_MAPS if args.training_split else args.real_maps
    small: list[dict[str, Any]] = []

    def in_small_boxes(truth: DensityMap, label: str, into: list, **more: Any) -> None:
        for side in args.small_box:
            coarse = in_small_box(truth, side)
            for noise in args.noise:
                try:
                    row = denoise(coarse, noise)
                except IngestError as exc:  # no molecule left at the contour
                    print(f"{label} in {side} voxels, noise {noise}: {exc}")
                    continue
                name = f"{label} in {'x'.join(map(str, coarse.shape))} voxels"
                into.append({"map": name, **more, **row})
                print(_brief(into[-1]), flush=True)

    for path in [] if args.no_real else [Path(p) for p in reals]:
        truth = read_map(path)
        split = split_of(group_of(path), "real", cfg)
        for noise in args.noise:
            row = denoise(truth, noise)
            real.append({"map": path.name, "split": split, **row})
            print(_brief(real[-1]), flush=True)
        in_small_boxes(truth, path.name, small, split=split)
    # the simulated maps in small boxes last: the draws before stay as they were
    small_simulated: list[dict[str, Any]] = []
    for path in paths if args.small_box else []:
        truth = simulate_map(path, args.resolution)
        in_small_boxes(truth, f"SIMULATED {path.name}", small_simulated)
    which = "training-split" if args.training_split else "held-out"
    result: dict[str, Any] = {
        "command": "python -m benchmarks.bench_denoise " + shlex.join(sys.argv[1:]),
        "what": f"denoising {which} SIMULATED maps ({args.resolution:g} Å) and "
        "real sample maps with Gaussian noise of sigma = level x the truth's "
        "std; Pearson with the truth over the box and the FSC = 0.5 resolution "
        "(Å, smaller is better) against it, on the input's grid; the real maps' "
        "truth is the deposited map before the added noise",
        "encoder": str(args.checkpoint),
        "encoder_hash": gen.encoder.checkpoint_hash[:12],
        "prior": str(args.prior),
        "prior_hash": gen.prior_hash[:12],
        "unet": {"file": args.unet, **(unet_info or {})} if args.unet else None,
        "swan_denoise_strength": DEFAULT_STRENGTH,
        "oracle_sigmas_voxels": list(map(float, SIGMAS)),
        "simulated": summarise(simulated, args.noise),
        "simulated_goal": goal(summarise(simulated, args.noise), DEFAULT_STRENGTH),
    }
    if real:
        result["real"] = summarise(real, args.noise)
        result["real_goal"] = goal(result["real"], DEFAULT_STRENGTH)
    if small:
        result["small_box"] = summarise(small, args.noise)
        result["small_box_goal"] = goal(result["small_box"], DEFAULT_STRENGTH)
    if small_simulated:
        result["small_box_simulated"] = summarise(small_simulated, args.noise)
        result["small_box_simulated_goal"] = goal(
            result["small_box_simulated"], DEFAULT_STRENGTH
        )
    result["rows"] = simulated + real + small + small_simulated
    result["run"] = record.finish()
    return result


def _brief(row: dict[str, Any]) -> str:
    keep = {k: round(v, 3) for k, v in row.items() if k.endswith("pearson")}
    return f"{row['map']} noise {row['noise']}: {keep}"


def print_table(result: dict[str, Any]) -> None:
    print(result["what"])
    for part in ("simulated", "real", "small_box"):
        if part not in result:
            continue
        for level, methods in result[part].items():
            print(f"{part}, noise {level}:   Pearson   FSC=0.5 (Å)")
            for m, v in methods.items():
                if v["pearson"] is None:
                    print(f"  {'-':>6}  {'-':>6}  {m} (no map made)")
                    continue
                failed = f" ({v['failed']} refused)" if v.get("failed") else ""
                print(f"  {v['pearson']:6.3f}  {v['fsc05_angstrom']:6.2f}  {m}{failed}")
        for level, g in result[f"{part}_goal"].items():
            margins = ", ".join(
                f"{b} {m['pearson']:+.3f} / {m['fsc05_angstrom_gained']:+.2f} Å"
                for b, m in g["margin_over"].items()
            )
            print(f"{part} {level}: {g['method']} over {margins}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default=str(DEFAULT_PRIOR))
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--models", nargs="+", default=[str(m) for m in MODELS])
    parser.add_argument("--real-maps", nargs="+", default=[str(m) for m in REAL_MAPS])
    parser.add_argument("--no-real", action="store_true")
    parser.add_argument("--training-split", action="store_true")
    parser.add_argument("--unet", default=None, help="a benchmarks.unet_denoiser file")
    parser.add_argument("--resolution", type=float, default=6.0)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--strength", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument(
        "--solvent-margin",
        type=int,
        nargs="+",
        default=[],
        help="more solvent margins (voxels) to compare, with each --rounds",
    )
    parser.add_argument("--rounds", type=int, nargs="+", default=[ROUNDS])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--with-own-pieces",
        action="store_true",
        help="also swan denoise's path with the noisy map's own pieces at the "
        "contour counted as the molecule, always and when missed",
    )
    parser.add_argument(
        "--outside",
        nargs="+",
        default=[],
        choices=OUTSIDE_WEIGHTS,
        help="also swan denoise's path with the data's weight outside the "
        "molecule's mask measured this way (box: on the whole box; own: on "
        "the outside alone)",
    )
    parser.add_argument(
        "--uncalibrated",
        action="store_true",
        help="also swan denoise's path without fitting the prior's map to the "
        "noisy map's units first (as before)",
    )
    parser.add_argument(
        "--ceilings",
        action="store_true",
        help="also the bounds of benchmarks.denoise_ceilings: swan denoise's "
        "data step on the clean map's canonical volume, on its code, on the "
        "decoder fitted to it, and the decoder fitted to the noisy map",
    )
    parser.add_argument(
        "--contour-factor",
        type=float,
        nargs="*",
        default=[],
        help="also swan denoise's path with the noisy map canonicalized at "
        "this share of the way from its median to the contour",
    )
    parser.add_argument(
        "--small-box",
        type=int,
        nargs="*",
        default=[],
        help="also each real map resampled into a box of this many voxels (its "
        "longest side), the voxels larger by as much",
    )
    parser.add_argument(
        "--mean-of",
        type=int,
        default=0,
        help="also the default strength's map as the mean of N draws, and of "
        "N axis flips (N <= 8)",
    )
    parser.add_argument(
        "--auto",
        action="store_true",
        help="also swan denoise without a contour (the automatic level of the "
        "noisy map, and of the map smoothed by a 1-voxel Gaussian)",
    )
    add_out_argument(parser, "bench_denoise.json")
    args = parser.parse_args()
    args.strength = sorted({*args.strength, DEFAULT_STRENGTH})
    save_result(run(args), args.out, print_table, rows_key="rows")


if __name__ == "__main__":
    main()
