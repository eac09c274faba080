"""Benchmark: what the latent prior generates, against held-out maps.

**References** (held out of the encoder's and the prior's training): the test
split of the encoder's dataset (:mod:`encoder.training_data.dataset`, built here
item by item with its own jobs, so exactly those items): the real maps of the
test groups (haemoglobin, HCN4, spike, rotavirus VP6, ribosome 3J6B; ``view 0``
the map as deposited, views > 0 augmented), SIMULATED maps of the test groups'
atomic models (random view and resolution), and the SYNTHETIC assemblies whose
group the split puts in the test set. Their canonical volumes are split in two
halves by a seeded shuffle: A is the reference set, B a second sample of the
same distribution.

**Candidates**, each as many maps as B, in the canonical frame:

* ``held-out half B`` (the floor: what a perfect generator would score, at this
  sample size);
* ``reconstructions of B`` (B through the encoder and decoder: what decoding
  alone costs);
* ``prior T=...``: maps drawn from the prior alone (``swan generate -n``), at
  temperature 1, at the temperature chosen on TRAINING data, and with the
  contour chosen there too (below);
* ``gaussian``: the baseline: a Gaussian fitted (maximum likelihood) to the
  encoder's continuous latent ``f`` (the input of the quantizers, 32 x 8^3) of
  training items, sampled, quantized and decoded exactly as the prior's draws
  are. With fewer items than dimensions its covariance is the sample covariance
  (rank N - 1), sampled exactly as ``mean + (F - mean)^T w / sqrt(N - 1)``, w
  standard normal.

``--samplers`` adds the prior's draws made other ways, at temperature 1, for
comparison only (the defaults stay as they are): ``euler-N`` integrates the
flow with N Euler steps instead of the prior's own count; ``cascade`` draws
coarse to fine, a full latent with no scale kept, then again with its first
scale's tokens kept, and so on to the finest scale (each scale drawn given the
coarser ones, as the conditional variations are).

**Metrics** (against A): the Fréchet distance between Gaussians fitted to the
retrieval vectors (per scale; :meth:`swan_index.map_encoder.MapEncoder.encode`,
what ingest stores); and, with ``D = 1 - IoU`` of the voxel masks at the contour
(canonical value >= 0.5, the canonical surface: the map's contour for A and B,
the same level for decoded maps, as the encoder's evaluation uses), coverage
(COV: the fraction of A that is the nearest neighbour of some candidate),
minimum matching distance (MMD: the mean over A of the distance to the nearest
candidate) and 1-NN accuracy (1-NNA: leave-one-out nearest-neighbour
classification of A against the candidates; 50 % is ideal), as in Achlioptas
et al. 2018 and PointFlow (Yang et al. 2019).

**Temperature and contour** of the prior's draws, chosen on TRAINING items
only (``--train-synthetic``, ``--train-views``; draw seeds apart from the
evaluation's): the temperature (the starting noise's scale) of
``--temperatures`` whose draws' volume inside the contour is nearest to that of
the training items' reconstructions; then the level at which draws at that
temperature hold that volume, made the draws' contour (values mapped piecewise
linearly, that level to 0.5, 0 and 1 kept).

**Conditional** (``swan generate --like ENTRY --keep-scales K``): a store of
held-out entries (the test groups' real maps, the test models SIMULATED at
``--resolution``, ``--store-synthetic`` SYNTHETIC test assemblies) plus the
training groups' real maps as distractors. Per held-out entry and K,
``--draws`` variations (``--context-draws`` for K other than 3) keep its first
K scales and draw the finer ones; each is put on the entry's grid and searched
as ``swan search FILE`` does (every pose, the rotational fit). Reported: the
fraction whose source entry is at rank 1 (and, beside it, the fraction whose
top hit is the source or another map of its molecule: a real map's variation
may find its model SIMULATED, which the store holds too; each draw's top hit is
in the result); beside it, the same for the first 3
scales decoded alone (``coarse only``), for the entry's own map and for its
reconstruction (its full code decoded: the ceiling of a variation); and the
spread between the draws of one entry (mean pairwise ``1 - Pearson`` and
``1 - IoU`` in the canonical frame), against the same distances between
different held-out entries. Variations are drawn at strength 1 (the finer
scales drawn from noise: what ``swan generate --like`` does) and, for K = 3,
at the strength chosen on a store of TRAINING entries (the training groups'
real maps and synthetic training assemblies): the largest of
``--variation-strengths`` whose variations find their entry at rank 1 at least
``--target`` of the time (strength < 1 starts from the entry's own latent mixed
with noise, as ``swan denoise`` does).

    $ python -m benchmarks.bench_generation
    $ python -m benchmarks.bench_generation --synthetic 300 --draws 2 --keep 3
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import linalg

from benchmarks.bench_prior import MODELS, SHARED_MODELS, held_out
from benchmarks.common import (
    SHARED_DATA,
    RunRecord,
    add_out_argument,
    save_result,
)
from encoder.training_data.dataset import (
    DatasetConfig,
    from_uint8,
    group_of,
    run_job,
    split_of,
)
from encoder.training_data.synthetic import build_assembly, random_spec
from ingest.canonical import volume_correlation
from ingest.errors import IngestError
from ingest.mapio import DensityMap, read_map
from ingest.simulate import simulate_map
from swan_index.generate import DEFAULT_PRIOR, Generator, on_input_grid
from swan_index.map_encoder import DEFAULT_CHECKPOINT, MapEncoder
from swan_index.prepare import PreparedMap, prepare_map, shrink
from swan_index.query import Query, search
from swan_index.ranking import SearchOptions
from swan_index.store import Store

SHARED_MAPS = SHARED_DATA / "maps"
MAP_SUFFIXES = (".map", ".mrc", ".ccp4", ".map.gz", ".mrc.gz")
MODEL_SUFFIXES = (".pdb", ".cif", ".ent", ".pdb.gz", ".cif.gz")
#: The canonical surface: the map's contour (as :mod:`encoder.evaluate` uses).
LEVEL = 0.5


@dataclass
class Item:
    """One dataset item: its canonical volume ``[G, G, G]`` in [0, 1]."""

    name: str
    kind: str
    volume: np.ndarray


# -- the dataset's items, by split ---------------------------------------------------
def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(suffixes))


def dataset_items(
    split: str, args: argparse.Namespace, synthetic: range, views: int
) -> list[Item]:
    """The items of ``split`` that the dataset's jobs make (seed ``args.seed``):
    real maps and models in ``views`` views each, synthetic ones of ``synthetic``.
    A job that fails is left out (as the dataset builder does)."""
    cfg = DatasetConfig(seed=args.dataset_seed, grid=args.grid)
    jobs = []
    for kind, folder, suffixes in (
        ("real", Path(args.maps), MAP_SUFFIXES),
        ("simulated", Path(args.models_dir), MODEL_SUFFIXES),
    ):
        for path in _files(folder, suffixes):
            if split_of(group_of(path), kind, cfg) == split:
                jobs += [(kind, str(path), v) for v in range(views)]
    items = []
    for kind, path, view in jobs:
        vol, _ = run_job((kind, path, view, cfg.seed, cfg.grid))
        if vol is not None:
            items.append(Item(f"{Path(path).name}/{view}", kind, from_uint8(vol)))
    for i in synthetic:
        if split_of(f"synthetic-{cfg.seed}-{i}", "synthetic", cfg) != split:
            continue
        vol, _ = run_job(("synthetic", i, cfg.seed, cfg.grid))
        if vol is not None:
            items.append(Item(f"synthetic:{i}", "synthetic", from_uint8(vol)))
    return items


# -- metrics --------------------------------------------------------------------------
def masks(volumes: np.ndarray) -> np.ndarray:
    """Voxel masks at the contour, flattened: float32 ``[N, G^3]`` of 0/1."""
    return (np.asarray(volumes).reshape(len(volumes), -1) >= LEVEL).astype(np.float32)


def iou_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``1 - IoU`` ``[len(a), len(b)]`` of two batches of masks (:func:`masks`);
    two empty masks are at distance 0."""
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return 1.0 - np.where(union > 0, inter / np.maximum(union, 1.0), 1.0)


def coverage_mmd(d_ref_cand: np.ndarray) -> tuple[float, float]:
    """COV and MMD from distances ``[references, candidates]``."""
    covered = np.unique(d_ref_cand.argmin(axis=0))
    return len(covered) / d_ref_cand.shape[0], float(d_ref_cand.min(axis=1).mean())


def one_nna(d_rr: np.ndarray, d_cc: np.ndarray, d_rc: np.ndarray) -> float:
    """Leave-one-out 1-NN accuracy of telling references from candidates (0.5:
    indistinguishable, 1: apart)."""
    n_r, n_c = d_rc.shape
    full = np.block([[d_rr, d_rc], [d_rc.T, d_cc]]).astype(np.float64)
    np.fill_diagonal(full, np.inf)
    nearest = full.argmin(axis=1)
    label = np.r_[np.zeros(n_r, bool), np.ones(n_c, bool)]
    return float((label[nearest] == label).mean())


def frechet(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to rows of ``x`` and ``y``.

    Raises:
        ValueError: fewer than two rows in either.
    """
    if min(len(x), len(y)) < 2:
        raise ValueError(
            f"{len(x)} and {len(y)} maps: a Fréchet distance needs at least two "
            "per set; raise --synthetic or --views"
        )
    mx, my = x.mean(0), y.mean(0)
    cx = np.cov(x, rowvar=False)
    cy = np.cov(y, rowvar=False)
    root = linalg.sqrtm(cx @ cy)
    if np.iscomplexobj(root):  # rounding: sqrtm of a near-singular product
        root = root.real
    return float(((mx - my) ** 2).sum() + np.trace(cx + cy - 2.0 * root))


def score_set(
    ref: np.ndarray, ref_vectors: list[np.ndarray], cand: np.ndarray, enc: MapEncoder
) -> dict[str, Any]:
    """Every metric of candidate volumes ``cand`` against reference volumes."""
    vectors = enc.encode(cand).vectors
    m_ref, m_cand = masks(ref), masks(cand)
    d_rc = iou_distance(m_ref, m_cand)
    cov, mmd = coverage_mmd(d_rc)
    nna = one_nna(iou_distance(m_ref, m_ref), iou_distance(m_cand, m_cand), d_rc)
    scales = enc.model.config.scales
    return {
        "n": len(cand),
        "frechet": {
            str(s): frechet(r, c)
            for s, r, c in zip(scales, ref_vectors, vectors, strict=True)
        },
        "cov": cov,
        "mmd": mmd,
        "1-nna": nna,
        "inside": float(m_cand.mean()),
    }


# -- candidates -----------------------------------------------------------------------
def decode_latents(gen: Generator, f: torch.Tensor) -> np.ndarray:
    """Continuous latents -> quantized, decoded canonical volumes in [0, 1]."""
    enc = gen.encoder
    with torch.no_grad():
        return enc.decode_indices(enc._quantize(f)[1])[:, 0].clamp(0, 1).numpy()


def latents(gen: Generator, volumes: np.ndarray, batch: int = 16) -> torch.Tensor:
    """The encoder's continuous latents ``[N, D, n, n, n]`` of canonical volumes."""
    out = []
    with torch.no_grad():
        for start in range(0, len(volumes), batch):
            x = torch.from_numpy(np.asarray(volumes[start : start + batch]))[:, None]
            out.append(gen.encoder.encode_latent(x)[0])
    return torch.cat(out)


def gaussian_draws(f: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` draws of the maximum-likelihood Gaussian of latents ``f``."""
    flat = f.flatten(1).double()
    mean = flat.mean(0)
    w = torch.randn(n, len(flat), generator=torch.Generator().manual_seed(seed))
    draws = mean + (w.double() @ (flat - mean)) / max(len(flat) - 1, 1) ** 0.5
    return draws.float().reshape(n, *f.shape[1:])


def prior_latents(
    gen: Generator, n: int, temperature: float, seed: int
) -> torch.Tensor:
    """``n`` continuous latents drawn from the prior alone at ``temperature``:
    :func:`encoder.prior.sample`'s flow path (the same noise for the same
    seed) stopped before quantization, so that the decoder can also read them
    unquantized."""
    cfg = gen.prior.config
    side, d = cfg.latent_side, cfg.latent_dim
    noise = torch.randn(
        n, d, side, side, side, generator=torch.Generator().manual_seed(seed)
    )
    cond = torch.zeros_like(noise)
    k = torch.zeros(n, dtype=torch.long)
    return gen.prior.integrate(noise * temperature, cond, k, 0.0)


def cascade_draws(gen: Generator, n: int, seed: int) -> np.ndarray:
    """``n`` maps drawn coarse to fine (``--samplers cascade``): scale by scale,
    a latent drawn from the prior given the tokens kept so far, of which the
    next scale's tokens are kept."""
    enc, prior = gen.encoder, gen.prior
    side, d = prior.config.latent_side, prior.config.latent_dim
    g = torch.Generator().manual_seed(seed)
    keep: list[torch.Tensor] = []
    with torch.no_grad():
        for _ in enc.config.scales:
            noise = torch.randn(n, d, side, side, side, generator=g)
            cond = enc.cumulative_latents(keep)[-1] if keep else torch.zeros_like(noise)
            k = torch.full((n,), len(keep), dtype=torch.long)
            tokens = enc._quantize(prior.integrate(noise, cond, k, 0.0), keep=keep)[1]
            keep = tokens[: len(keep) + 1]
        return enc.decode_indices(tokens)[:, 0].clamp(0, 1).numpy()


def euler_draws(gen: Generator, n: int, steps: int, seed: int) -> np.ndarray:
    """``n`` maps drawn at temperature 1 with ``steps`` Euler steps."""
    own = gen.prior.config
    gen.prior.config = replace(own, steps=steps)
    try:
        return prior_draws(gen, n, 1.0, seed)
    finally:
        gen.prior.config = own


def prior_draws(gen: Generator, n: int, temperature: float, seed: int) -> np.ndarray:
    """``n`` maps drawn from the prior alone at ``temperature`` (as
    ``swan generate -n`` draws them at temperature 1)."""
    return decode_latents(gen, prior_latents(gen, n, temperature, seed))


def reconstructions(gen: Generator, volumes: np.ndarray) -> np.ndarray:
    return decode_latents(gen, latents(gen, volumes))


def inside(volumes: np.ndarray) -> float:
    """Mean fraction of the box at or above the contour."""
    return float((np.asarray(volumes) >= LEVEL).mean())


def level_for(volumes: np.ndarray, target: float) -> float:
    """The level at which ``volumes`` hold ``target`` of their boxes on average."""
    return float(np.quantile(np.asarray(volumes), 1.0 - target))


def relevel(volumes: np.ndarray, level: float) -> np.ndarray:
    """Volumes mapped piecewise linearly so that ``level`` becomes the contour
    (0.5), 0 and 1 staying where they are."""
    v = np.asarray(volumes, np.float32)
    low = v * (LEVEL / level)
    high = LEVEL + (v - level) * ((1.0 - LEVEL) / (1.0 - level))
    return np.where(v < level, low, high).astype(np.float32)


def choose_temperature(
    gen: Generator, train: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    """On TRAINING items only (draw seeds apart from the evaluation's): the
    temperature whose draws' volume inside the contour is nearest to the
    training items' reconstructions', then the level at which draws at that
    temperature hold that volume."""
    target = inside(reconstructions(gen, train))
    f = prior_latents(gen, args.calibration, 1.0, args.seed + 1000)
    with torch.no_grad():
        unquantized = gen.encoder.decoder(f)[:, 0].clamp(0, 1).numpy()
    draws = {
        t: prior_draws(gen, args.calibration, t, args.seed + 1000)
        for t in args.temperatures
    }
    tried = {f"{t:g}": inside(v) for t, v in draws.items()}
    best = min(args.temperatures, key=lambda t: abs(tried[f"{t:g}"] - target))
    return {
        "training items inside": inside(train),
        "training reconstructions inside": target,
        "draws inside by temperature": tried,
        "draws at T=1 decoded unquantized, inside": inside(unquantized),
        "chosen": best,
        "level": min(max(level_for(draws[best], target), 0.05), 0.95),
    }


def unconditional(
    gen: Generator, enc: MapEncoder, args: argparse.Namespace
) -> dict[str, Any]:
    t0 = time.perf_counter()
    synthetic = range(args.synthetic)
    refs = dataset_items("test", args, synthetic, args.views)
    train = dataset_items("train", args, range(args.train_synthetic), args.train_views)
    print(f"{len(refs)} held-out and {len(train)} training items", flush=True)
    order = np.random.default_rng(args.seed).permutation(len(refs))
    half_a = [refs[i] for i in order[: len(refs) // 2]]
    half_b = [refs[i] for i in order[len(refs) // 2 :]]
    a = np.stack([it.volume for it in half_a])
    b = np.stack([it.volume for it in half_b])
    train_volumes = np.stack([it.volume for it in train])
    calibration = choose_temperature(gen, train_volumes, args)
    n = len(b)
    candidates = {
        "held-out half B (floor)": b,
        "reconstructions of B": reconstructions(gen, b),
        "prior T=1": prior_draws(gen, n, 1.0, args.seed),
    }
    chosen, level = calibration["chosen"], calibration["level"]
    drawn = prior_draws(gen, n, chosen, args.seed)
    if chosen != 1.0:
        candidates[f"prior T={chosen:g} (chosen on training)"] = drawn
    name = f"prior T={chosen:g}, contour {level:.3f} (both chosen on training)"
    candidates[name] = relevel(drawn, level)
    for sampler in args.samplers:
        if sampler == "cascade":
            candidates["prior T=1, coarse to fine"] = cascade_draws(gen, n, args.seed)
        else:
            steps = int(sampler.removeprefix("euler-"))
            candidates[f"prior T=1, {steps} Euler steps"] = euler_draws(
                gen, n, steps, args.seed
            )
    f_train = latents(gen, train_volumes)
    candidates["gaussian (fitted to training latents)"] = decode_latents(
        gen, gaussian_draws(f_train, n, args.seed)
    )
    ref_vectors = list(enc.encode(a).vectors)
    scores = {
        name: score_set(a, ref_vectors, vols, enc) for name, vols in candidates.items()
    }
    kinds: dict[str, dict[str, int]] = {"A": {}, "B": {}, "training": {}}
    for label, items in (("A", half_a), ("B", half_b), ("training", train)):
        for it in items:
            kinds[label][it.kind] = kinds[label].get(it.kind, 0) + 1
    return {
        "references": {"A": len(a), "B": len(b), "A inside": inside(a)},
        "kinds": kinds,
        "temperature": calibration,
        "scores": scores,
        "seconds": time.perf_counter() - t0,
    }


# -- conditional ----------------------------------------------------------------------
@dataclass
class Entry:
    name: str
    dmap: DensityMap
    queried: bool
    #: the molecule (the dataset's group: a real map and the SIMULATED map of
    #: the same molecule's model share it; each synthetic assembly its own)
    molecule: str = ""
    prepared: PreparedMap | None = None
    entry_id: int = -1


def _synthetic_map(index: int, seed: int) -> DensityMap:
    """Synthetic item ``index``'s map as the dataset simulates it (its job's
    rng and resolution rule)."""
    rng = np.random.default_rng([seed, 7, index])
    spec = random_spec(rng)
    resolution = float(rng.uniform(4.0, 12.0))
    dmap = simulate_map(
        build_assembly(spec), resolution, voxel_size=max(resolution / 3, 1.5)
    )
    return replace(dmap, path=f"synthetic:{index}")


def _synthetic_entries(split: str, n: int, args: argparse.Namespace) -> list[Entry]:
    """The first ``n`` synthetic items of ``split`` as SIMULATED maps."""
    cfg = DatasetConfig(seed=args.dataset_seed)
    out = []
    for i in range(args.synthetic + args.train_synthetic):
        if len(out) == n:
            break
        if split_of(f"synthetic-{cfg.seed}-{i}", "synthetic", cfg) == split:
            out.append(
                Entry(
                    f"synthetic:{i} (simulated)",
                    _synthetic_map(i, cfg.seed),
                    True,
                    f"synthetic-{cfg.seed}-{i}",
                )
            )
    return out


def store_entries(args: argparse.Namespace, split: str) -> list[Entry]:
    """The entries of the held-out store (``split="test"``: the test groups' real
    maps, the test models simulated, synthetic test assemblies, and the training
    groups' real maps as distractors) or of the training store (``"train"``:
    the training groups' real maps and synthetic training assemblies, all
    queried)."""
    cfg = DatasetConfig(seed=args.dataset_seed)
    entries = []
    for path in _files(Path(args.maps), MAP_SUFFIXES):
        in_split = split_of(group_of(path), "real", cfg) == split
        if split == "test" or in_split:
            entries.append(Entry(path.name, read_map(path), in_split, group_of(path)))
    if split == "test":
        for path in held_out([Path(m) for m in args.models]):
            dmap = simulate_map(path, args.resolution)
            entries.append(
                Entry(f"{path.name} (simulated)", dmap, True, group_of(path))
            )
    return entries + _synthetic_entries(split, args.store_synthetic, args)


class VariationSearch:
    """A store of ``entries``; searches variations of the queried ones as
    ``swan search FILE`` does."""

    def __init__(self, entries: list[Entry], gen: Generator, enc: MapEncoder):
        self.gen, self.enc, self.entries = gen, enc, entries
        for e in entries:
            e.prepared = prepare_map(e.dmap, enc.grid, False, label=e.name)
        self._tmp = tempfile.TemporaryDirectory()
        self.store = Store.open(Path(self._tmp.name) / "g.swan", encoder=enc.info)
        ids = self.store.add(
            enc.encode(np.stack([e.prepared.volumes[0] for e in entries])),
            [e.prepared.record for e in entries],
            np.stack([shrink(e.prepared.volumes[0], 32) for e in entries]),
        )
        for e, i in zip(entries, ids, strict=True):
            e.entry_id = int(i)
        self.by_id = {e.entry_id: e for e in entries}
        self.store.flush()

    def close(self) -> None:
        self.store.close()
        self._tmp.cleanup()

    def top(self, entry: Entry, volume: np.ndarray | None, cv: Any) -> int:
        """The top hit's id of ``volume`` (canonical) on ``entry``'s grid, or of
        the entry's own map (``None``); -1 when nothing reaches the contour."""
        contour = entry.prepared.record.contour
        dmap = entry.dmap
        if volume is not None:
            dmap = replace(dmap, data=on_input_grid(volume, cv, entry.dmap))
        try:
            query = Query.from_map(self.enc, dmap, contour=contour)
        except IngestError:
            return -1
        hits = search(self.store, query, 5, SearchOptions(), significance=False)
        return hits[0].id if hits else -1

    def same_molecule(self, entry: Entry, hit: int) -> bool:
        """Whether the hit ``hit`` is ``entry``'s molecule (itself included)."""
        return hit in self.by_id and self.by_id[hit].molecule == entry.molecule

    def hit_name(self, hit: int) -> str | None:
        return self.by_id[hit].name if hit in self.by_id else None

    def ceiling(self) -> dict[str, Any]:
        """Rank-1 fractions of the queried entries' own maps and of their
        reconstructions (the full code decoded: what a variation can at best
        keep of them); beside them, the fraction whose top hit is the same
        molecule (the entry or another map of its molecule), and each
        reconstruction's top hit."""
        own, recon, recon_molecule, rows = [], [], [], []
        for e in self.entries:
            if e.queried:
                cv = self.gen.canonical(e.dmap, e.prepared.record.contour)
                own.append(self.top(e, None, None) == e.entry_id)
                volume = self.gen.reconstruct(cv, None)[0]
                hit = self.top(e, volume, cv)
                recon.append(hit == e.entry_id)
                recon_molecule.append(self.same_molecule(e, hit))
                rows.append({"entry": e.name, "reconstruction top": self.hit_name(hit)})
        return {
            "own map rank 1": float(np.mean(own)),
            "reconstruction rank 1": float(np.mean(recon)),
            "reconstruction same molecule at rank 1": float(np.mean(recon_molecule)),
            "reconstruction rows": rows,
        }

    def measure(
        self, keep: int, strength: float, draws: int, seed: int, coarse: bool
    ) -> dict[str, Any]:
        """Rank-1 fraction and spread of ``draws`` variations per held-out entry
        keeping ``keep`` scales (``strength`` < 1: started from the entry's own
        latent, as a denoise is); with ``coarse``, the first ``keep`` scales
        decoded alone too."""
        gen = self.gen
        found: dict[str, list[bool]] = defaultdict(list)
        molecule: dict[str, list[bool]] = defaultdict(list)
        tops: list[dict[str, Any]] = []
        empty: dict[str, int] = defaultdict(int)
        pearson, iou = [], []
        for e in self.entries:
            if not e.queried:
                continue
            cv = gen.canonical(e.dmap, e.prepared.record.contour)
            vols = {"variation": gen.reconstruct(cv, strength, keep, draws, seed)}
            if coarse:
                x = torch.from_numpy(np.asarray(cv.values, np.float32))[None, None]
                with torch.no_grad():
                    tokens = gen.encoder.encode_indices(x)
                    low = gen.encoder.decode_indices(tokens, up_to=keep)[:, 0]
                vols["coarse only"] = low.clamp(0, 1).numpy()
            for kind, batch in vols.items():
                hits = [self.top(e, v, cv) for v in batch]
                for hit in hits:
                    found[kind].append(hit == e.entry_id)
                    molecule[kind].append(self.same_molecule(e, hit))
                    empty[kind] += hit == -1
                if kind == "variation":
                    tops.append(
                        {"entry": e.name, "top": list(map(self.hit_name, hits))}
                    )
            d_pearson, d_iou = _pairwise(vols["variation"])
            pearson += d_pearson
            iou += d_iou
        out: dict[str, Any] = {}
        for kind, hits in found.items():
            out[f"{kind} rank 1"] = float(np.mean(hits))
            out[f"{kind} same molecule at rank 1"] = float(np.mean(molecule[kind]))
            out[f"{kind} n"] = len(hits)
            out[f"{kind} empty"] = empty[kind]
        out["spread 1-pearson"] = float(np.mean(pearson))
        out["spread 1-iou"] = float(np.mean(iou))
        out["rows"] = tops
        return out


def _pairwise(volumes: np.ndarray) -> tuple[list[float], list[float]]:
    """``1 - Pearson`` and ``1 - IoU`` of every pair of ``volumes``."""
    m = masks(volumes)
    d_iou = iou_distance(m, m)
    pearson, iou = [], []
    for i in range(len(volumes)):
        for j in range(i + 1, len(volumes)):
            pearson.append(1.0 - volume_correlation(volumes[i], volumes[j]))
            iou.append(float(d_iou[i, j]))
    return pearson, iou


def choose_strength(
    gen: Generator, enc: MapEncoder, args: argparse.Namespace
) -> dict[str, Any]:
    """On a store of TRAINING entries, K = 3 variations at each
    ``--variation-strengths``; chosen: the largest strength (most freedom)
    whose rank-1 fraction reaches ``--target``, else the one with the highest."""
    search_ = VariationSearch(store_entries(args, "train"), gen, enc)
    try:
        tried = {
            f"{s:g}": search_.measure(3, s, args.train_draws, args.seed + 1000, False)
            for s in args.variation_strengths
        }
    finally:
        search_.close()
    rank1 = {s: tried[f"{s:g}"]["variation rank 1"] for s in args.variation_strengths}
    reach = [s for s, r in rank1.items() if r >= args.target]
    chosen = max(reach) if reach else max(rank1, key=lambda s: (rank1[s], s))
    return {
        "entries": len(search_.entries),
        "tried": tried,
        "chosen": chosen,
    }


def conditional(
    gen: Generator, enc: MapEncoder, args: argparse.Namespace
) -> dict[str, Any]:
    t0 = time.perf_counter()
    calibration = choose_strength(gen, enc, args)
    tried = {k: v["variation rank 1"] for k, v in calibration["tried"].items()}
    print(
        f"variation strength (training data): rank 1 {tried}, "
        f"chosen {calibration['chosen']:g}",
        flush=True,
    )
    search_ = VariationSearch(store_entries(args, "test"), gen, enc)
    held = [e for e in search_.entries if e.queried]
    print(f"store: {len(search_.entries)} entries, {len(held)} held out", flush=True)
    try:
        ceiling = search_.ceiling()
        by_keep = {
            f"K={k} s=1": search_.measure(
                k, 1.0, args.draws if k == 3 else args.context_draws, args.seed, k == 3
            )
            for k in args.keep
        }
        chosen = calibration["chosen"]
        if chosen != 1.0:
            by_keep[f"K=3 s={chosen:g} (chosen on training)"] = search_.measure(
                3, chosen, args.draws, args.seed, False
            )
    finally:
        search_.close()
    between_pearson, between_iou = _pairwise(
        np.stack([e.prepared.volumes[0] for e in held])
    )
    return {
        "entries": len(search_.entries),
        "held_out_entries": len(held),
        "strength": calibration,
        **ceiling,
        "by_keep": by_keep,
        "between entries 1-pearson": float(np.mean(between_pearson)),
        "between entries 1-iou": float(np.mean(between_iou)),
        "seconds": time.perf_counter() - t0,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    record = RunRecord()
    gen = Generator.load(args.checkpoint, args.prior)
    enc = MapEncoder(args.checkpoint)
    result_u = unconditional(gen, enc, args)
    record.mark("unconditional")
    result_c = conditional(gen, enc, args) if args.keep else {}
    return {
        "command": "python -m benchmarks.bench_generation " + shlex.join(sys.argv[1:]),
        "encoder": str(args.checkpoint),
        "encoder_hash": gen.encoder.checkpoint_hash[:12],
        "prior": gen.prior_hash[:12],
        "what": "generation against held-out maps (the encoder dataset's test "
        "split: real maps, SIMULATED models, SYNTHETIC assemblies), canonical "
        "frame; reference set A, candidates as many as B; Frechet distance of "
        "the retrieval vectors per scale; COV, MMD and 1-NNA with 1 - IoU of "
        "the masks at canonical value >= 0.5 (the contour)",
        "unconditional": result_u,
        "conditional_what": "variations of held-out store entries keeping K "
        "scales, put on the entry's grid and searched as swan search FILE does; "
        "fraction with the source entry at rank 1 (and, beside it, with the "
        "source or another map of its molecule, e.g. its model SIMULATED, at "
        "rank 1); spread: mean pairwise "
        "distance between the draws of one entry (canonical frame), beside the "
        "mean distance between different held-out entries",
        "conditional": result_c,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "run": record.finish(),
    }


def print_table(result: dict[str, Any]) -> None:
    u = result["unconditional"]
    print(f"references A: {u['references']}; kinds {u['kinds']}")
    print(f"temperature (training data): {u['temperature']}")
    scales = list(next(iter(u["scores"].values()))["frechet"])
    head = "  ".join(f"FD s{s}" for s in scales)
    print(f"{'candidates':44s} {'COV':>6s} {'MMD':>6s} {'1-NNA':>6s} inside  {head}")
    for name, s in u["scores"].items():
        fd = "  ".join(f"{v:6.3f}" for v in s["frechet"].values())
        print(
            f"{name:44s} {s['cov']:6.3f} {s['mmd']:6.3f} {s['1-nna']:6.3f} "
            f"{s['inside']:6.4f}  {fd}"
        )
    c = result["conditional"]
    if c:
        print(
            f"conditional: {c['held_out_entries']} held-out of {c['entries']} "
            f"entries; own map at rank 1: {c['own map rank 1']:.3f}, its "
            f"reconstruction {c['reconstruction rank 1']:.3f} (same molecule "
            f"{c['reconstruction same molecule at rank 1']:.3f}); between "
            f"entries 1-pearson {c['between entries 1-pearson']:.3f}, 1-iou "
            f"{c['between entries 1-iou']:.3f}"
        )
        for name, row in c["by_keep"].items():
            shown = {k: v for k, v in row.items() if k != "rows"}
            print(f"  {name}: " + ", ".join(f"{k} {v:.3g}" for k, v in shown.items()))


def _sampler(text: str) -> str:
    steps = text.removeprefix("euler-")
    if text == "cascade" or (text.startswith("euler-") and steps.isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"{text}: use cascade or euler-N (N steps)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default=str(DEFAULT_PRIOR))
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--maps", default=str(SHARED_MAPS))
    parser.add_argument("--models-dir", default=str(SHARED_MODELS))
    parser.add_argument("--models", nargs="+", default=[str(m) for m in MODELS])
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--dataset-seed", type=int, default=0)
    parser.add_argument("--synthetic", type=int, default=600)
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--train-synthetic", type=int, default=300)
    parser.add_argument("--train-views", type=int, default=2)
    parser.add_argument("--calibration", type=int, default=32)
    parser.add_argument(
        "--temperatures", type=float, nargs="+", default=[1.0, 1.25, 1.5]
    )
    parser.add_argument(
        "--samplers",
        nargs="*",
        default=[],
        type=_sampler,
        help="more ways to draw, for comparison: cascade, euler-N",
    )
    parser.add_argument("--resolution", type=float, default=6.0)
    parser.add_argument("--store-synthetic", type=int, default=4)
    parser.add_argument("--keep", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--draws", type=int, default=3, help="per entry, K = 3")
    parser.add_argument("--context-draws", type=int, default=2, help="K = 1, 2")
    parser.add_argument("--train-draws", type=int, default=2)
    parser.add_argument(
        "--variation-strengths", type=float, nargs="+", default=[1.0, 0.8, 0.6]
    )
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    add_out_argument(parser, "bench_generation.json")
    args = parser.parse_args()
    save_result(run(args), args.out, print_table)


if __name__ == "__main__":
    main()
