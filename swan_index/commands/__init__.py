"""Subcommands of the ``swan`` command line (see :mod:`swan_index.cli`)."""
