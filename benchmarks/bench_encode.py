"""Benchmark: encoding throughput (maps/s at 64^3, batched, CPU).

Times ``CryoSwan.encode`` of the shipped checkpoint (or a fresh default model when
there is none) against the encoders of the two baselines at equal bits, in the same
run and on the same batch (best of ``--repeat``), and writes JSON. Two batches:
distinct canonical volumes of the real sample maps' candidate poses (the
figures to read), and random binary volumes (the batch of earlier runs; such
volumes share their coarse tokens, which the encoder decodes once).

    $ python -m benchmarks.bench_encode [--checkpoint data/cryoswan.pt] [--batch 32]

(from the repository root).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from benchmarks.common import ROOT, add_out_argument
from encoder.checkpoint import load_checkpoint
from encoder.evaluate import encoding_throughput
from encoder.model import CryoSwanConfig
from encoder.train import build_model


def _real_volumes(grid: int, n: int) -> torch.Tensor:
    """``[n, 1, grid, grid, grid]``: distinct canonical volumes of the sample
    maps' candidate poses (what upload searches encode), repeated if fewer."""
    import numpy as np

    from ingest import canonicalize_poses, is_map_file, read_map

    seen, vols = set(), []
    for path in sorted(p for p in (ROOT / "data" / "maps").iterdir() if is_map_file(p)):
        for pose in canonicalize_poses(read_map(path), grid=grid):
            if pose.values.tobytes() not in seen:
                seen.add(pose.values.tobytes())
                vols.append(pose.values)
    vols = (vols * (n // len(vols) + 1))[:n]
    return torch.from_numpy(np.stack(vols))[:, None]


def main(argv: list[str] | None = None) -> dict:
    """Time the encoders, write the JSON result (``--out``) and return it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "data" / "cryoswan.pt"
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    add_out_argument(parser, "bench_encode.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint.exists():
        model, _ = load_checkpoint(args.checkpoint)
        source = (
            str(args.checkpoint.relative_to(ROOT))
            if args.checkpoint.is_relative_to(ROOT)
            else str(args.checkpoint)
        )
    else:
        model, source = build_model("cryoswan", CryoSwanConfig()), "untrained default"
    grid = model.config.grid
    single = build_model("single-scale", model.config)
    plain = build_model("plain-ae", model.config)
    real = _real_volumes(grid, args.batch)
    rates = {}
    for name, x in (("", real), ("random_binary_", None)):
        rates[f"{name}cryoswan"] = encoding_throughput(
            model, grid, args.batch, args.repeat, volumes=x
        )
        rates[f"{name}single_scale_vq"] = encoding_throughput(
            single, grid, args.batch, args.repeat, volumes=x
        )
        rates[f"{name}plain_ae"] = encoding_throughput(
            plain,
            grid,
            args.batch,
            args.repeat,
            encode=plain.quantized_latent,
            volumes=x,
        )
    with torch.no_grad():
        tokens = model.encode_indices(real) if hasattr(model, "encode_indices") else []
    result = {
        "benchmark": f"encode throughput, {grid}^3, batch {len(real)}, CPU",
        "checkpoint": source,
        "threads": torch.get_num_threads(),
        "volumes": "the first distinct canonical volumes of the candidate poses of "
        "the real sample maps in data/maps (REAL); random_binary_*: random "
        "binary volumes (10 % set)",
        # rows the decoder runs for each scale's retrieval vectors (one per
        # distinct prefix of tokens)
        "decoded_per_scale": [
            len(
                {
                    tuple(torch.cat([t[i].flatten() for t in tokens[: s + 1]]).tolist())
                    for i in range(len(real))
                }
            )
            for s in range(len(tokens))
        ],
        "maps_per_s": rates,
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
    }
    result["ratios"] = {
        "cryoswan_over_single_scale": rates["cryoswan"] / rates["single_scale_vq"],
        "cryoswan_over_plain_ae": rates["cryoswan"] / rates["plain_ae"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
