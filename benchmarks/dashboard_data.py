"""The dashboard benchmark's stores: generated entries with a 2D layout.

Codes in the shape of the shipped encoder's (clustered vectors, L2-normalised,
random tokens), realistic-looking metadata (resolutions and release dates drawn
from ``EMDB_metadata.csv`` when it exists) and Gaussian blobs around
:data:`CENTRES` cluster centres plus :data:`NOISE_FRACTION` noise (cluster -1) as
the layout; see :mod:`benchmarks.bench_dashboard`.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import SHARED_DATA

#: Resolutions and release dates of real EMDB entries (optional).
EMDB_METADATA = SHARED_DATA / "headers" / "EMDB_metadata.csv"
CENTRES = 50
NOISE_FRACTION = 0.04
BATCH = 10_000

METHODS = ("singleParticle", "helical", "subtomogramAveraging", "tomography")
METHOD_WEIGHTS = (0.84, 0.06, 0.06, 0.04)
ORGANISMS = (
    ("Homo sapiens", 0.42),
    ("Saccharomyces cerevisiae", 0.08),
    ("Escherichia coli", 0.08),
    ("Mus musculus", 0.06),
    ("Severe acute respiratory syndrome coronavirus 2", 0.05),
    ("Thermus thermophilus", 0.03),
    ("Sus scrofa", 0.03),
    ("Bos taurus", 0.03),
    ("Oryctolagus cuniculus", 0.03),
    ("Arabidopsis thaliana", 0.02),
    ("Plasmodium falciparum", 0.02),
    ("Mycobacterium tuberculosis", 0.02),
    ("Drosophila melanogaster", 0.02),
    ("Rattus norvegicus", 0.02),
    ("Chlamydomonas reinhardtii", 0.02),
    (None, 0.13),
)
_SUBJECTS = (
    "the human 26S proteasome",
    "the 80S ribosome",
    "the bacterial 70S ribosome",
    "spike glycoprotein",
    "the TRPV1 ion channel",
    "GABA(A) receptor",
    "a class B GPCR",
    "the spliceosomal C complex",
    "RNA polymerase II",
    "the nuclear pore complex",
    "mitochondrial complex I",
    "ATP synthase",
    "the CRISPR-Cas9 surveillance complex",
    "an ABC transporter",
    "the tau filament",
    "alpha-synuclein fibril",
    "apoferritin",
    "the photosystem II supercomplex",
    "a bacteriophage capsid",
    "the dynein-dynactin complex",
    "the voltage-gated sodium channel Nav1.7",
    "the insulin receptor ectodomain",
    "glutamate dehydrogenase",
    "the type III secretion system needle complex",
)
_STATES = (
    "",
    " in the apo state",
    " bound to ATP",
    " in complex with an inhibitor",
    " in an open conformation",
    " in a closed conformation",
    " bound to a nanobody",
    " in lipid nanodiscs",
    " with its substrate",
    ", focused refinement",
    ", consensus map",
)
_PREFIXES = ("Cryo-EM structure of ", "Structure of ", "", "Cryo-EM map of ")


# -- the stores ------------------------------------------------------------------------
def _emdb_rows() -> list[tuple[float, dt.date | None]]:
    """(resolution, release date) of the real EMDB entries, when the file exists."""
    if not EMDB_METADATA.exists():
        return []
    rows = []
    with EMDB_METADATA.open(newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                res = float(row["resolution"])
            except (KeyError, ValueError):
                continue
            date = (row.get("map_release_date") or "")[:10]
            rows.append((res, dt.date.fromisoformat(date) if date else None))
    return rows


def _codes(info: Any, centre_of: np.ndarray, rng: np.random.Generator) -> Any:
    """Generated codes in the shape of the encoder's: each entry a noisy copy of
    its cluster centre, the noise shared across scales plus a little of each
    scale's own (as ``_seeded`` in ``tests/test_store.py``); random tokens."""
    from encoder.code import MultiScaleCode

    n = len(centre_of)
    shared = rng.normal(size=(n, 32))
    vectors, tokens = [], []
    for side, depth, dim, k in zip(
        info.scales, info.depths, info.dims, info.codebook_sizes, strict=True
    ):
        mix = np.random.default_rng(side).normal(size=(32, dim)) / np.sqrt(32)
        centres = np.random.default_rng(100 + side).normal(size=(CENTRES, dim))
        v = centres[centre_of] + 0.35 * (shared @ mix)
        v += 0.035 * rng.normal(size=(n, dim))
        vectors.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype("f4"))
        size = (n, depth, side, side, side)
        tokens.append(rng.integers(0, k, size, np.int16))
    return MultiScaleCode(info.scales, tuple(tokens), tuple(vectors), info.hash)


def _title(rng: np.random.Generator) -> str:
    return (
        _PREFIXES[rng.integers(len(_PREFIXES))]
        + _SUBJECTS[rng.integers(len(_SUBJECTS))]
        + _STATES[rng.integers(len(_STATES))]
    )


def _records(
    start: int,
    n: int,
    seed: int,
    rng: np.random.Generator,
    emdb: list[tuple[float, dt.date | None]],
) -> list[Any]:
    """Metadata of entries ``start .. start + n - 1`` (generated)."""
    from swan_index.schema import EntryRecord

    methods = rng.choice(len(METHODS), n, p=METHOD_WEIGHTS)
    org_p = np.array([w for _, w in ORGANISMS])
    organisms = rng.choice(len(ORGANISMS), n, p=org_p / org_p.sum())
    rgs = np.exp(rng.normal(np.log(45), 0.45, n))
    if emdb:
        drawn = [emdb[i] for i in rng.integers(0, len(emdb), n)]
    else:  # no real metadata: log-normal resolutions, dates 2002..2024
        res = np.exp(rng.normal(np.log(3.6), 0.35, n))
        days = rng.integers(0, 23 * 365, n)
        base = dt.date(2002, 1, 1)
        drawn = [
            (float(r), base + dt.timedelta(days=int(d)))
            for r, d in zip(res, days, strict=True)
        ]
    records = []
    for j in range(n):
        i = start + j
        method = METHODS[methods[j]]
        res, date = drawn[j]
        if method == "tomography":  # tomograms seldom state a resolution
            res = None if rng.random() < 0.7 else round(res * 3, 1)
        records.append(
            EntryRecord(
                sha256=hashlib.sha256(
                    f"bench-dashboard-{seed}-{i}".encode()
                ).hexdigest(),
                emdb_id=f"EMD-{1000 + i}",
                title=_title(rng),
                method=method,
                resolution=res,
                organism=ORGANISMS[organisms[j]][0],
                release_date=date,
                rg=round(float(rgs[j]), 2),
                label="generated",
            )
        )
    return records


def _layout(
    centre_of: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A 2D layout with visible clusters: a Gaussian blob per cluster centre (of
    its own width), and :data:`NOISE_FRACTION` of the entries as noise (cluster
    -1, wider blobs), as UMAP + a density clustering give."""
    layout_rng = np.random.default_rng(7)
    centres = layout_rng.uniform(-12, 12, (CENTRES, 2))
    widths = layout_rng.uniform(0.25, 0.9, CENTRES)
    n = len(centre_of)
    xy = centres[centre_of] + widths[centre_of, None] * rng.normal(size=(n, 2))
    noise = rng.random(n) < NOISE_FRACTION
    xy[noise] = centres[centre_of[noise]] + 2.5 * rng.normal(size=(noise.sum(), 2))
    cluster = np.where(noise, -1, centre_of).astype(np.int64)
    return xy, cluster


def build_store(path: Path, n: int, seed: int = 0) -> dict[str, Any]:
    """A store of ``n`` generated entries, with a layout, at ``path``."""
    from swan_index.map_encoder import MapEncoder
    from swan_index.store import Store

    t0 = time.perf_counter()
    info = MapEncoder().info
    rng = np.random.default_rng(seed)
    emdb = _emdb_rows()
    # uneven cluster sizes (a few big families, many small ones)
    weights = 1.0 / np.arange(1, CENTRES + 1) ** 0.8
    centre_of = rng.choice(CENTRES, n, p=weights / weights.sum())
    ids = []
    with Store.open(path, encoder=info) as store:
        for start in range(0, n, BATCH):
            part = centre_of[start : start + BATCH]
            code = _codes(info, part, rng)
            ids.append(store.add(code, _records(start, len(part), seed, rng, emdb)))
        xy, cluster = _layout(centre_of, rng)
        store.set_layout(np.concatenate(ids), xy, cluster)
        count = store.count()
    return {
        "entries": count,
        "clusters": CENTRES,
        "noise_fraction": NOISE_FRACTION,
        "metadata_source": str(EMDB_METADATA) if emdb else "generated",
        "build_s": round(time.perf_counter() - t0, 2),
    }
