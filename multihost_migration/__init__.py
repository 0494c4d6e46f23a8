"""Live-migration tests of QEMU guests between hosts that share storage."""

__version__ = "0.1.0"
