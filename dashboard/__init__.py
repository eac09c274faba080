"""Dash dashboard and HTTP service (built in a later step)."""
