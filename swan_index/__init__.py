"""Cryo-SWAN search: the store, queries and the ``swan`` command line.

Everything a user of the Python API needs is importable from here::

    from swan_index import MapEncoder, Query, SearchOptions, Store, search

The names are loaded on first use (PEP 562), so that ``import swan_index.store``
(and the ingest worker processes) do not load torch.

Modules, one idea each:

* :mod:`~swan_index.store`: the Store (lifecycle, writes, reads);
  :mod:`~swan_index.tables` its DuckDB tables, :mod:`~swan_index.indexes` its FAISS
  indexes, :mod:`~swan_index.schema` the entry record and the encoder identity,
  :mod:`~swan_index.db` connections and locking;
* :mod:`~swan_index.ranking`: scoring candidates (``SearchOptions``, ``Hit``);
  :mod:`~swan_index.where` the SQL filter sandbox; :mod:`~swan_index.vectors` one
  FAISS index;
* :mod:`~swan_index.query`: the one query type and ``search`` (rank -> fit ->
  hits); :mod:`~swan_index.fit` the rotational fit;
* :mod:`~swan_index.map_encoder`: the encoder wrapper (a checkpoint that encodes
  canonical volumes); :mod:`~swan_index.prepare` reading and canonicalizing for the
  store (no torch); :mod:`~swan_index.indexer` what ``swan ingest`` runs;
* :mod:`~swan_index.layout` the archive's UMAP map; :mod:`~swan_index.retrieval`
  retrieval metrics; :mod:`~swan_index.cli` and :mod:`~swan_index.commands` the
  command line.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module that defines it.
_EXPORTS = {
    "Store": "swan_index.store",
    "EncoderInfo": "swan_index.schema",
    "EntryRecord": "swan_index.schema",
    "Hit": "swan_index.ranking",
    "Ranking": "swan_index.ranking",
    "SearchOptions": "swan_index.ranking",
    "Query": "swan_index.query",
    "StoredEntry": "swan_index.query",
    "search": "swan_index.query",
    "FitQuery": "swan_index.fit",
    "apply_fit": "swan_index.fit",
    "fit_query": "swan_index.fit",
    "MapEncoder": "swan_index.map_encoder",
    "DEFAULT_CHECKPOINT": "swan_index.map_encoder",
    "ingest_paths": "swan_index.indexer",
    "IngestSummary": "swan_index.indexer",
    "evaluate_store": "swan_index.retrieval",
    "read_truth": "swan_index.retrieval",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'swan_index' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
