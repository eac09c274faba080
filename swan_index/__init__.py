"""The Store (DuckDB + FAISS per scale) and the ``swan`` command line."""
