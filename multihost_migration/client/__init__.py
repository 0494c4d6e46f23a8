"""The per-host client job (see job.py)."""
