"""Benchmark: denoising held-out SIMULATED maps with the latent prior.

Maps are SIMULATED from atomic models of molecules held out of the encoder's and
the prior's training (the test groups of :mod:`encoder.training_data.dataset`:
haemoglobin 5ME2, rotavirus VP6 6272, HCN4 6GYN, the spike's N-terminal domain
6VYB, the ribosome piece 3J6B), at ``--resolution``; Gaussian noise of
``--noise`` times the clean map's standard deviation is added. Each noisy map
goes through ``swan denoise``'s path (:class:`swan_index.generate.Generator`, at
the clean map's contour), and the result, on the input's own grid, is compared
with the clean map by Pearson correlation over the whole box. In the same run:

* ``noisy``: the noisy input itself;
* ``gaussian``: the noisy input smoothed by a Gaussian of ``--gaussian-sigma``
  voxels (a classical baseline, not tuned on these maps);
* ``autoencoder``: the encoder's own reconstruction of the noisy map (strength 0:
  its code decoded, no prior);
* ``ceiling``: the same path applied to the clean map (what the encoder and the
  contour leave of a perfect denoise: density below the contour is not modelled);
* ``prior s=S``: each prior file given (``--prior``, several to compare) at each
  ``--strength``.

Variations (``swan generate --like``'s path) of the clean maps, in the canonical
frame: for each ``--keep`` K, ``--draws`` maps keeping the first K scales and
drawing the finer ones; their mean Pearson with the clean canonical volume and
their volume inside the contour relative to the encoder's own reconstruction's
(1 = as much molecule as the original). Baseline in the same run: ``coarse
only``, the first K scales decoded alone. Unconditional draws (``--samples``):
the fraction of the canonical box inside the contour, against the encoder's
reconstructions of the clean maps.

    $ python -m benchmarks.bench_prior --prior data/prior.pt
    $ python -m benchmarks.bench_prior --prior runs/a/prior.pt runs/b/prior.pt \\
        --noise 1 --strength 0.3 0.5
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from benchmarks.common import (
    ROOT,
    SHARED_DATA,
    RunRecord,
    add_out_argument,
    save_result,
)
from encoder.training_data.dataset import DEFAULT_TEST_GROUPS, group_of
from ingest.canonical import volume_correlation
from ingest.simulate import simulate_map
from swan_index.generate import DEFAULT_PRIOR, Generator, on_input_grid
from swan_index.map_encoder import DEFAULT_CHECKPOINT

SHARED_MODELS = SHARED_DATA / "models"
MODELS = (
    ROOT / "data" / "models" / "5me2.pdb",
    ROOT / "data" / "models" / "6272.pdb",
    SHARED_MODELS / "6gyn.pdb",
    SHARED_MODELS / "6vyb_Ndom.pdb",
    SHARED_MODELS / "3J6B_9.pdb",
)


def held_out(paths: list[Path]) -> list[Path]:
    """The model files that exist and belong to a held-out (test) group.

    Raises:
        ValueError: a file given is in a training group (not held out).
    """
    for p in paths:
        if group_of(p) not in DEFAULT_TEST_GROUPS:
            raise ValueError(f"{p}: not in a held-out group {DEFAULT_TEST_GROUPS}")
    return [p for p in paths if p.exists()]


def run(args: argparse.Namespace) -> dict[str, Any]:
    record = RunRecord()
    gens = {str(p): Generator.load(args.checkpoint, p) for p in args.prior}
    first = next(iter(gens.values()))
    rng = np.random.default_rng(args.seed)
    rows, variations = [], []
    for path in held_out([Path(m) for m in args.models]):
        clean = simulate_map(path, args.resolution)
        sd = float(clean.data.std())
        clean_cv = first.canonical(clean)
        variations += _variations(gens, clean_cv, path.name, args)
        for noise in args.noise:
            data = clean.data + rng.normal(0, noise * sd, clean.data.shape)
            noisy = replace(clean, data=data.astype(np.float32), path=f"noisy:{path}")
            cv = first.canonical(noisy)
            row = {"model": path.name, "noise": noise, "shape": list(clean.shape)}
            row["noisy"] = volume_correlation(noisy.data, clean.data)
            smooth = ndimage.gaussian_filter(noisy.data, args.gaussian_sigma)
            row["gaussian"] = volume_correlation(smooth, clean.data)
            ae = first.reconstruct(cv, None)[0]
            row["autoencoder"] = _score(ae, cv, noisy, clean)
            row["ceiling"] = _score(
                first.reconstruct(clean_cv, None)[0], clean_cv, clean, clean
            )
            for name, gen in gens.items():
                for s in args.strength:
                    vol = gen.reconstruct(cv, s, seed=args.seed)[0]
                    row[f"{name} s={s:g}"] = _score(vol, cv, noisy, clean)
            rows.append(row)
            print(
                {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
            )
    methods = [k for k in rows[0] if k not in ("model", "noise", "shape")]
    summary = {
        str(noise): {
            m: float(np.mean([r[m] for r in rows if r["noise"] == noise]))
            for m in methods
        }
        for noise in args.noise
    }
    inside = [
        v["reconstruction inside"] for v in variations if v["keep"] == args.keep[0]
    ]
    drawn = {
        name: float(np.mean([(d >= 0.5).mean() for d in g.sample(args.samples, 1)]))
        for name, g in gens.items()
    }
    kinds = [k for k in variations[0] if k not in ("model", "keep")]
    by_keep = {
        str(keep): {
            k: float(np.mean([v[k] for v in variations if v["keep"] == keep]))
            for k in kinds
        }
        for keep in args.keep
    }
    return {
        "command": "python -m benchmarks.bench_prior " + shlex.join(sys.argv[1:]),
        "what": "Pearson vs the clean map of held-out SIMULATED maps plus Gaussian "
        "noise (noise = sigma / the clean map's std), on the input's grid",
        "encoder": str(args.checkpoint),
        "encoder_hash": first.encoder.checkpoint_hash[:12],
        "priors": {name: g.prior_hash[:12] for name, g in gens.items()},
        "resolution": args.resolution,
        "mean_pearson": summary,
        "variations_what": "clean held-out maps in their canonical frame: the "
        "first K scales kept, the finer ones drawn (--draws per map); Pearson of "
        "the draws with the clean canonical volume, and their volume inside the "
        "contour over the encoder's own reconstruction's; 'coarse only': the "
        "first K scales decoded alone (no prior)",
        "variations": by_keep,
        "unconditional_what": "fraction of the canonical box inside the contour: "
        "the encoder's reconstructions of the clean held-out maps (mean) against "
        "--samples maps drawn from each prior alone (mean)",
        "unconditional": {"reconstructions": float(np.mean(inside)), **drawn},
        "rows": rows,
        "variation_rows": variations,
        "run": record.finish(),
    }


def _variations(
    gens: dict[str, Generator], cv: Any, name: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Per kept-scale count: the draws' Pearson with ``cv`` and their volume."""
    first = next(iter(gens.values()))
    x = torch.from_numpy(np.asarray(cv.values, np.float32))[None, None]
    tokens = first.encoder.encode_indices(x)
    full = first.reconstruct(cv, None)[0]
    inside = max(float((full >= 0.5).mean()), 1e-6)
    out = []
    for keep in args.keep:
        coarse = first.encoder.decode_indices(tokens, up_to=keep)[0, 0].numpy()
        row = {"model": name, "keep": keep, "reconstruction inside": inside}
        row["coarse only"] = volume_correlation(coarse, cv.values)
        for prior, gen in gens.items():
            draws = gen.reconstruct(cv, 1.0, keep, args.draws, args.seed)
            row[prior] = float(
                np.mean([volume_correlation(d, cv.values) for d in draws])
            )
            volume = np.mean([(d >= 0.5).mean() for d in draws]) / inside
            row[f"{prior} volume"] = float(volume)
        out.append(row)
    return out


def _score(volume: np.ndarray, cv: Any, noisy: Any, clean: Any) -> float:
    return volume_correlation(on_input_grid(volume, cv, noisy), clean.data)


def print_table(result: dict[str, Any]) -> None:
    print(result["what"])
    for noise, methods in result["mean_pearson"].items():
        print(f"noise {noise}:")
        for m, v in methods.items():
            print(f"  {v:6.3f}  {m}")
    print(result["unconditional_what"])
    for m, v in result["unconditional"].items():
        print(f"  {v:6.3f}  {m}")
    print(result["variations_what"])
    for keep, methods in result["variations"].items():
        print(f"keep {keep}:")
        for m, v in methods.items():
            print(f"  {v:6.3f}  {m}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", nargs="+", default=[str(DEFAULT_PRIOR)])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--models", nargs="+", default=[str(m) for m in MODELS])
    parser.add_argument("--resolution", type=float, default=6.0)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--strength", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--gaussian-sigma", type=float, default=1.0)
    parser.add_argument("--keep", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    add_out_argument(parser, "bench_prior.json")
    args = parser.parse_args()
    save_result(run(args), args.out, print_table, rows_key=["rows", "variation_rows"])


if __name__ == "__main__":
    main()
