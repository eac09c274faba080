"""Cryo-SWAN search: the store, queries and the ``swan`` command line.

Everything a user of the Python API needs is importable from here::

    from swan_index import MapEncoder, Query, SearchOptions, Store, search

The names are loaded on first use (``lazy_loader``, SPEC 1), so that
``import swan_index.store`` (and the ingest worker processes) do not load torch.

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
  store (no torch); :mod:`~swan_index.indexer` what ``swan ingest`` runs, with
  its engines :mod:`~swan_index.local_engine` (worker processes) and
  :mod:`~swan_index.ray_engine` (a Ray cluster, the ``cluster`` extra);
* :mod:`~swan_index.layout` the archive's UMAP map; :mod:`~swan_index.retrieval`
  retrieval metrics; :mod:`~swan_index.cli` and :mod:`~swan_index.commands` the
  command line.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "store": ["Store"],
        "schema": ["EncoderInfo", "EntryRecord"],
        "ranking": ["Hit", "Ranking", "SearchOptions"],
        "query": ["Query", "StoredEntry", "search", "search_explained"],
        "fit": ["FitQuery", "apply_fit", "fit_query"],
        "map_encoder": ["DEFAULT_CHECKPOINT", "MapEncoder"],
        "indexer": ["IngestSummary", "ingest_paths"],
        "retrieval": ["evaluate_store", "read_truth"],
    },
)
