"""Dossier sync benchmark: python -m bench.sync."""
