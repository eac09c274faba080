"""Encoding: a checkpoint that turns canonical volumes (and map files) into codes.

The part that needs no model (reading, canonicalization) is in
:mod:`swan_index.prepare`, so that worker processes need not import torch.
"""

from __future__ import annotations

from pathlib import Path

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
from swan_index.store import EncoderInfo, Store

#: The trained checkpoint shipped with the package.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "data" / "cryoswan.pt"


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
        self, store: Store, entry_id: int
    ) -> tuple[MultiScaleCode | int, float | None, int]:
        """What to search ``store`` with for its entry ``entry_id``.

        The store keeps one pose per entry, but a map whose canonical pose is
        ambiguous may have been stored in a different pose from its relatives; a
        map file searched is tried in every candidate pose. So the entry's map is
        read again (with the contour it was stored at) and encoded in every
        candidate pose, when its file is still where it was ingested from,
        unchanged (same size and modification time) and readable, and the store
        holds this encoder's codes. Otherwise the entry's stored vectors are used.

        Returns:
            ``(query, rg, poses)``: a code or the entry id for :meth:`Store.search`,
            the entry's radius of gyration, and the number of poses searched.

        Raises:
            KeyError: no such entry.
        """
        rows = store.get([entry_id])
        if not rows:
            raise KeyError(f"no entry {entry_id} in {store.path}")
        row = rows[0]
        rg = row.get("rg")
        rg = None if rg is None or not np.isfinite(rg) else float(rg)
        path = row.get("source_path")
        if not path or store.encoder.hash != self.info.hash:
            return entry_id, rg, 1
        try:
            stat = Path(path).stat()
        except OSError:
            return entry_id, rg, 1
        size, mtime = row.get("file_size"), row.get("file_mtime_ns")
        if (size is not None and size != stat.st_size) or (
            mtime is not None and mtime != stat.st_mtime_ns
        ):
            return entry_id, rg, 1
        try:
            prepared = prepare_map(
                read_map(path), self.grid, True, contour=row.get("contour")
            )
        except IngestError:
            return entry_id, rg, 1
        return self.encode(prepared.volumes), rg, len(prepared.volumes)


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
