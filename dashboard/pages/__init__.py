"""Sections of the dashboard's page, each owning its layout and its callbacks.

Every module has ``layout(service)`` (components) and ``register(app, service)``
(its callbacks, registered on that app only, so two apps can live in one process);
the callback bodies are plain module-level functions that tests call directly.

* :mod:`~dashboard.pages.explore`: metadata filters, colour-by, the UMAP map,
  box/lasso selection table.
* :mod:`~dashboard.pages.search`: upload a map, search, list and mark the hits,
  show the query (its isosurface, its place on the map), export the hits;
  :mod:`~dashboard.pages.pair`, laid out and registered by it, superposes a
  picked hit on the query, and :mod:`~dashboard.pages.denoise` denoises the
  query with the latent prior (labelled generated).
* :mod:`~dashboard.pages.entry`: the entry detail panel (metadata, 3D isosurface,
  similar maps, coarse-to-fine reconstructions);
  :mod:`~dashboard.pages.variations`, laid out and registered by it, draws
  variations of the entry with the latent prior (labelled generated).
* :mod:`~dashboard.pages.permalink`: the page's address, which keeps the view.

Two modules are shared helpers, not sections: :mod:`~dashboard.pages.common`
(styles, messages, tables) and :mod:`~dashboard.pages.filtering` (the filters'
SQL and messages).

Sections talk through ``dcc.Store`` components defined by :mod:`dashboard.app`:
``where-store`` (the filter in effect), ``hits-store`` (ids of the last search's
hits), ``entry-store`` (the entry in the detail panel) and ``umap-meta`` (how the
map's overlay traces are indexed).
"""
