"""Encoding: a checkpoint that turns canonical volumes (and map files) into codes.

The part that needs no model (reading, canonicalization) is in
:mod:`swan_index.prepare`, so that worker processes need not import torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encoder.checkpoint import load_checkpoint
from encoder.code import MultiScaleCode
from encoder.model import CryoSwan
from ingest.discover import find_entries
from ingest.errors import IngestError
from ingest.header import read_header
from ingest.mapio import read_map
from swan_index.prepare import PreparedMap, prepare_map
from swan_index.store import EncoderInfo

log = logging.getLogger(__name__)

#: The trained checkpoint shipped with the package.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "data" / "cryoswan.pt"
#: A stored entry's map is read again for a search (:meth:`MapEncoder.entry_query`)
#: only up to this many bytes; a larger one is searched with its stored vectors.
REREAD_LIMIT = 512 * 2**20


class MapEncoder:
    """A loaded Cryo-SWAN checkpoint that encodes canonical volumes.

    Args:
        checkpoint: a file written by ``swan train`` (default: the shipped one).
        device: torch device.
    """

    def __init__(
        self, checkpoint: str | Path = DEFAULT_CHECKPOINT, device: str = "cpu"
    ) -> None:
        model, _ = load_checkpoint(checkpoint, map_location=device)
        if not isinstance(model, CryoSwan):
            raise ValueError(
                f"{checkpoint}: a baseline checkpoint; the store needs a Cryo-SWAN one"
            )
        self.model = model.eval()
        self.device = device
        self.checkpoint = Path(checkpoint)
        self.info = EncoderInfo.of(model)

    @property
    def grid(self) -> int:
        return int(self.model.config.grid)

    def encode(self, volumes: np.ndarray, batch_size: int = 32) -> MultiScaleCode:
        """Codes of canonical volumes ``[B, G, G, G]`` (one row per volume)."""
        volumes = np.asarray(volumes, np.float32)
        g = self.grid
        if volumes.ndim != 4 or volumes.shape[1:] != (g, g, g):
            raise ValueError(
                f"volumes {volumes.shape}: expected [B, {g}, {g}, {g}] canonical "
                "volumes at this checkpoint's grid"
            )
        parts = []
        for start in range(0, len(volumes), batch_size):
            x = torch.from_numpy(volumes[start : start + batch_size])[:, None]
            parts.append(self.model.encode(x.to(self.device)))
        return concat_codes(parts)

    def encode_query(
        self, path: str | Path, contour: float | None = None
    ) -> tuple[MultiScaleCode, PreparedMap]:
        """Code of a query map in every candidate pose (one row per pose).

        Its EMDB header, when one lies beside it (as ingest finds them), gives the
        contour, so that a stored map searched again gives the same volume.

        Raises:
            IngestError: the file (or its header) cannot be read or holds no
                density above the contour.
        """
        entry = next(iter(find_entries(path)), None)
        metadata = None
        if entry is not None and entry.header_path is not None:
            metadata = read_header(entry.header_path)
        prepared = prepare_map(
            read_map(path), self.grid, True, metadata, entry, contour=contour
        )
        return self.encode(prepared.volumes), prepared

    def entry_query(
        self,
        row: dict[str, Any],
        stored: MultiScaleCode,
        max_bytes: int = REREAD_LIMIT,
    ) -> EntryQuery:
        """What to search a store with for one of its entries.

        The store keeps one pose per entry, but a map whose canonical pose is
        ambiguous may have been stored in a different pose from its relatives, and
        a map file searched is tried in every candidate pose. So the entry's map is
        read again (at the contour it was stored at) and encoded in every candidate
        pose, after its stored vectors (which keep a store built by older pose
        rules finding its own entries). That needs its file where it was ingested
        from, unchanged (size, modification time, sha256), readable, at most
        ``max_bytes``, and ``stored`` encoded by this encoder; otherwise the stored
        vectors alone are the query, and ``note`` says why.

        Args:
            row: the entry's ``entries`` row (:meth:`Store.get`).
            stored: its stored code (:meth:`Store.get_code`).
            max_bytes: larger files are not read again.
        """
        rg = row.get("rg")
        rg = None if rg is None or not np.isfinite(rg) else float(rg)

        def stored_only(why: str) -> EntryQuery:
            return EntryQuery(stored, rg, len(stored), "stored", why)

        if stored.checkpoint_hash != self.info.hash:
            return stored_only("the store holds another encoder's codes")
        path = row.get("source_path")
        if not path:
            return stored_only("no map file recorded (a simulated entry)")
        try:
            stat = Path(path).stat()
        except OSError:
            return stored_only(f"{path}: not found")
        size, mtime = row.get("file_size"), row.get("file_mtime_ns")
        if (size is not None and size != stat.st_size) or (
            mtime is not None and mtime != stat.st_mtime_ns
        ):
            return stored_only(f"{path}: changed since it was ingested")
        if stat.st_size > max_bytes:
            return stored_only(f"{path}: over {max_bytes / 2**20:.0f} MiB")
        try:
            dmap = read_map(path)
            if row.get("sha256") and dmap.sha256 != row["sha256"]:
                return stored_only(f"{path}: changed since it was ingested")
            prepared = prepare_map(dmap, self.grid, True, contour=row.get("contour"))
            fresh = self.encode(prepared.volumes)
        except (IngestError, OSError, ValueError, MemoryError) as exc:
            log.warning("%s: searching with its stored vectors: %s", path, exc)
            return stored_only(f"{path}: cannot be read again")
        both = concat_codes([stored, fresh])
        return EntryQuery(both, rg, len(both), "map", None)


@dataclass(frozen=True)
class EntryQuery:
    """What :meth:`MapEncoder.entry_query` searches with for a stored entry.

    Attributes:
        code: one row per pose (the stored vectors first).
        rg: the entry's radius of gyration, Å, for the size term.
        poses: rows of ``code``.
        source: ``"map"`` (its file read again) or ``"stored"`` (vectors only).
        note: why the file was not read again (``None`` when it was).
    """

    code: MultiScaleCode
    rg: float | None
    poses: int
    source: str
    note: str | None


def concat_codes(codes: list[MultiScaleCode]) -> MultiScaleCode:
    """One code holding the rows of several (same encoder)."""
    first = codes[0]
    if any(c.checkpoint_hash != first.checkpoint_hash for c in codes):
        raise ValueError("cannot join codes of different encoders")
    n = len(first.scales)
    return MultiScaleCode(
        first.scales,
        tuple(np.concatenate([c.tokens[i] for c in codes]) for i in range(n)),
        tuple(np.concatenate([c.vectors[i] for c in codes]) for i in range(n)),
        first.checkpoint_hash,
    )
