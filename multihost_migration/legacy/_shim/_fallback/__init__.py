"""Fallbacks put last on sys.path in a legacy job (e.g. `six` where none is installed)."""
