"""Inside the guest: console login sessions, workloads and checkers."""

from .console import ConsoleSession

__all__ = ["ConsoleSession"]
