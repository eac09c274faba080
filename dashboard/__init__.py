"""The Dash dashboard and the HTTP service of one store (``swan serve``), and
the demo store they serve with ``swan demo``."""
