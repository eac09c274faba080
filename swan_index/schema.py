"""The store's DuckDB schema and the record of one entry.

Tables (``swan.duckdb``):

* ``entries``: one row per map (the columns of :class:`EntryRecord`, plus ``id``,
  ``encoder_hash`` and ``ingested_at``). ``--where`` predicates run over it.
* ``codes``: ``id``, then per scale ``i`` (coarse to fine) ``tokens_i`` (int16
  bytes, ``[depth, s, s, s]``) and ``vector_i`` (``FLOAT[dim_i]``, L2-normalised).
* ``previews``: ``id``, ``grid``, ``volume``: the canonical volume at a small grid,
  uint8 (0..255 for 0..1), zlib-compressed, for the dashboard's 3D view.
* ``layout``: ``id``, ``x``, ``y``, ``cluster``: the UMAP layout of the archive.
* ``ingest_log``: every file an ingest tried: ``ok``, ``skipped`` or ``error`` with
  the reason.
* ``store_meta``: key/value (JSON): format version, encoder identity, next id,
  generation (bumped by every write).
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from encoder.code import MultiScaleCode

FORMAT_VERSION = 1

#: ``entries`` columns from :class:`EntryRecord`, with their SQL types.
_SQL_TYPES = {
    "emdb_id": "VARCHAR",
    "title": "VARCHAR",
    "method": "VARCHAR",
    "resolution": "DOUBLE",
    "contour": "DOUBLE",
    "contour_source": "VARCHAR",
    "organism": "VARCHAR",
    "sample_name": "VARCHAR",
    "release_date": "DATE",
    "fitted_pdbs": "VARCHAR[]",
    "voxel_size": "DOUBLE",
    "box": "INTEGER[3]",
    "extent": "DOUBLE[3]",
    "rg": "DOUBLE",
    "mol_extents": "DOUBLE[3]",
    "mol_volume": "DOUBLE",
    "n_poses": "INTEGER",
    "label": "VARCHAR",
    "simulated": "BOOLEAN",
    "source_path": "VARCHAR",
    "header_path": "VARCHAR",
    "sha256": "VARCHAR",
    "file_size": "BIGINT",
    "file_mtime_ns": "BIGINT",
    # atomic models (added after format 1 first shipped: see ADDED_COLUMNS)
    "pdb_id": "VARCHAR",
    "model_method": "VARCHAR",
    "n_chains": "INTEGER",
    "n_residues": "INTEGER",
}
#: ``entries`` columns added to format 1 after it first shipped: a store made
#: before lacks them, and its writer adds them when it opens (nullable, so
#: every stored row reads ``NULL``; see :func:`swan_index.tables.add_columns`).
ADDED_COLUMNS = ("pdb_id", "model_method", "n_chains", "n_residues")

_ARROW = {
    "VARCHAR": pa.string(),
    "DOUBLE": pa.float64(),
    "DATE": pa.date32(),
    "VARCHAR[]": pa.list_(pa.string()),
    "INTEGER[3]": pa.list_(pa.int32(), 3),
    "DOUBLE[3]": pa.list_(pa.float64(), 3),
    "INTEGER": pa.int32(),
    "BOOLEAN": pa.bool_(),
    "BIGINT": pa.int64(),
}
#: Arrow type of every ``entries`` column from :class:`EntryRecord`.
ARROW_TYPES = {name: _ARROW[sql] for name, sql in _SQL_TYPES.items()}


@dataclass(frozen=True)
class EntryRecord:
    """Metadata of one stored map (a row of ``entries`` without the store's own
    columns). Missing values are ``None``.

    Attributes:
        emdb_id: ``"EMD-N"``, or ``None`` for maps that are not EMDB entries.
        title, method, organism, sample_name, release_date, fitted_pdbs: from the
            EMDB header.
        resolution: Å (header).
        contour: contour level used for the canonical volume, map units.
        contour_source: ``user``, ``header``, ``map`` (simulated) or ``auto``.
        voxel_size: Å per voxel (mean over the axes).
        box: grid size ``(x, y, z)``.
        extent: physical box size ``(x, y, z)``, Å.
        rg: radius of gyration of the density above the contour, Å.
        mol_extents: molecule extents along its principal axes, Å, largest first.
        mol_volume: enclosed volume at the contour, Å^3.
        n_poses: candidate canonical poses (more than 1 when the pose is ambiguous).
        label: a free label (e.g. the family of a labelled simulated set).
        simulated: the map was computed from a model.
        source_path: the map file (absolute).
        header_path: its header XML.
        sha256: content hash of the map file (or of the simulated volume).
        file_size, file_mtime_ns: of the source file, to skip unchanged files on
            re-ingest without reading them.
        pdb_id, model_method, n_chains, n_residues: of the atomic model a
            simulated map was computed from (its PDB id, experimental method,
            polymer chains and residues, assembly copies included).
    """

    sha256: str
    emdb_id: str | None = None
    title: str | None = None
    method: str | None = None
    resolution: float | None = None
    contour: float | None = None
    contour_source: str | None = None
    organism: str | None = None
    sample_name: str | None = None
    release_date: dt.date | None = None
    fitted_pdbs: tuple[str, ...] = ()
    voxel_size: float | None = None
    box: tuple[int, int, int] | None = None
    extent: tuple[float, float, float] | None = None
    rg: float | None = None
    mol_extents: tuple[float, float, float] | None = None
    mol_volume: float | None = None
    n_poses: int = 1
    label: str | None = None
    simulated: bool = False
    source_path: str | None = None
    header_path: str | None = None
    file_size: int | None = None
    file_mtime_ns: int | None = None
    pdb_id: str | None = None
    model_method: str | None = None
    n_chains: int | None = None
    n_residues: int | None = None

    def __post_init__(self) -> None:
        if not self.sha256 or not isinstance(self.sha256, str):
            raise ValueError("EntryRecord needs sha256 (the content hash of the map)")

    def row(self) -> list:
        """Values in :func:`record_columns` order."""
        values = []
        for name in record_columns():
            value = getattr(self, name)
            values.append(list(value) if isinstance(value, tuple) else value)
        return values


def record_columns() -> list[str]:
    return [f.name for f in fields(EntryRecord)]


def sql_type(column: str) -> str:
    """The SQL type of an ``entries`` column from :class:`EntryRecord`."""
    return _SQL_TYPES[column]


def ddl(scales: tuple[int, ...], dims: tuple[int, ...]) -> list[str]:
    """CREATE statements for a store whose encoder has these scales and dims."""
    entry_cols = ",\n    ".join(f"{c} {_SQL_TYPES[c]}" for c in record_columns())
    code_cols = ",\n    ".join(
        f"tokens_{i} BLOB NOT NULL, vector_{i} FLOAT[{d}] NOT NULL"
        for i, d in enumerate(dims)
    )
    return [
        f"""CREATE TABLE entries (
    id BIGINT PRIMARY KEY,
    {entry_cols},
    encoder_hash VARCHAR NOT NULL,
    ingested_at TIMESTAMP NOT NULL
)""",
        f"CREATE TABLE codes (\n    id BIGINT PRIMARY KEY,\n    {code_cols}\n)",
        """CREATE TABLE previews (
    id BIGINT PRIMARY KEY, grid SMALLINT NOT NULL, volume BLOB NOT NULL
)""",
        """CREATE TABLE layout (
    id BIGINT PRIMARY KEY, x DOUBLE, y DOUBLE, cluster INTEGER
)""",
        """CREATE TABLE ingest_log (
    run_id VARCHAR, logged_at TIMESTAMP, path VARCHAR, sha256 VARCHAR,
    status VARCHAR, reason VARCHAR, entry_id BIGINT
)""",
        "CREATE TABLE store_meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
        "CREATE INDEX entries_sha256 ON entries (sha256)",
    ]


@dataclass(frozen=True)
class EncoderInfo:
    """What a store needs to know about the encoder whose codes it holds."""

    hash: str
    scales: tuple[int, ...]
    depths: tuple[int, ...]
    dims: tuple[int, ...]
    codebook_size: int
    config: dict = field(default_factory=dict)

    @classmethod
    def of(cls, model: Any) -> EncoderInfo:
        """From a loaded :class:`encoder.CryoSwan`."""
        cfg = model.config
        dims = tuple(cfg.retrieval_dims)
        return cls(
            model.checkpoint_hash,
            tuple(cfg.scales),
            tuple(cfg.depths),
            dims,
            cfg.codebook_size,
            cfg.to_dict(),
        )

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """Codebook size per scale (the coarse scales may have smaller ones)."""
        coarse = self.config.get("coarse_codebook_size") or self.codebook_size
        return (int(coarse),) * (len(self.scales) - 1) + (self.codebook_size,)

    def _check_made_here(self, code: MultiScaleCode, what: str) -> None:
        """Refuse a code of another encoder, or of other scales."""
        if code.checkpoint_hash != self.hash:
            raise ValueError(
                f"{what} made by encoder {code.checkpoint_hash[:12]}, the store holds "
                f"codes of {self.hash[:12]}; encode with the store's checkpoint, or "
                f"re-encode the store: {reencode_hint()}"
            )
        if tuple(code.scales) != self.scales:
            raise ValueError(f"{what} scales {code.scales}, store scales {self.scales}")

    def check_code(self, code: MultiScaleCode) -> None:
        """Refuse a code to be stored that this encoder did not make, or of the
        wrong shapes, or with vectors that are not finite and L2-normalised.

        Raises:
            ValueError: what is wrong, and how to fix it.
        """
        enc = self
        self._check_made_here(code, "code")
        for i, (tok, vec) in enumerate(zip(code.tokens, code.vectors, strict=True)):
            side, depth = enc.scales[i], enc.depths[i]
            if tok.shape[1:] != (depth, side, side, side):
                raise ValueError(
                    f"scale {side}: tokens {tok.shape[1:]}, expected "
                    f"{(depth, side, side, side)}"
                )
            if vec.ndim != 2 or vec.shape[1] != enc.dims[i]:
                raise ValueError(
                    f"scale {side}: vectors {vec.shape[1:]}, expected ({enc.dims[i]},)"
                )
            if not np.all(np.isfinite(vec)):
                raise ValueError(f"scale {side}: vectors hold NaN or Inf")
            norms = np.linalg.norm(vec, axis=1)
            if np.any(np.abs(norms - 1) > 1e-3):
                raise ValueError(f"scale {side}: vectors must be L2-normalised")

    def query_vectors(self, query: MultiScaleCode) -> list[np.ndarray]:
        """Per scale the ``[P, dim]`` float32 vectors of a query code (P poses).

        Raises:
            ValueError: the code is another encoder's, or of the wrong shapes.
        """
        self._check_made_here(query, "query")
        vecs = [np.asarray(v, np.float32) for v in query.vectors]
        for v, d in zip(vecs, self.dims, strict=True):
            if v.ndim != 2 or v.shape[1] != d or not np.all(np.isfinite(v)):
                raise ValueError(f"query vectors {v.shape}: expected [P, {d}]")
        return vecs

    def to_dict(self) -> dict:
        return {
            "hash": self.hash,
            "scales": list(self.scales),
            "depths": list(self.depths),
            "dims": list(self.dims),
            "codebook_size": self.codebook_size,
            "config": self.config,
        }

    @classmethod
    def from_dict(cls, d: dict) -> EncoderInfo:
        return cls(
            d["hash"],
            tuple(d["scales"]),
            tuple(d["depths"]),
            tuple(d["dims"]),
            int(d["codebook_size"]),
            d.get("config", {}),
        )


def reencode_hint(store: object = "STORE", checkpoint: object = "CHECKPOINT") -> str:
    """The command that re-encodes a store with another checkpoint."""
    return f"`swan reencode --store {store} --checkpoint {checkpoint}`"


def encode_preview(volume: np.ndarray) -> bytes:
    """A canonical volume ``[g, g, g]`` in [0, 1] -> zlib-compressed uint8."""
    q = np.clip(np.rint(np.asarray(volume, np.float32) * 255), 0, 255).astype(np.uint8)
    return zlib.compress(q.tobytes(), 6)


def decode_preview(blob: bytes, grid: int) -> np.ndarray:
    """Inverse of :func:`encode_preview`: float32 ``[g, g, g]`` in [0, 1]."""
    q = np.frombuffer(zlib.decompress(blob), np.uint8).reshape(grid, grid, grid)
    return q.astype(np.float32) / 255.0
