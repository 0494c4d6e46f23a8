"""PortBlock: drop TCP to and from one port on this host, in an nftables
table of its own (in the host's network namespace on the lab), removed on
exit.  Drop, not reject: TCP retransmits, and the stream resumes once the
table is gone.  Used by firewall_block (the destination blocks mid-stream)
and postcopy_recover (the source partitions itself during postcopy).

Not a scenario itself (no `run`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Callable, Optional, Sequence, Tuple

from multihost_migration.errors import ConfigError, LabError

#: runner(argv, stdin) -> (exit status, output)
Runner = Callable[[Sequence[str], Optional[str]], Tuple[int, str]]


def _run(argv: Sequence[str], stdin: Optional[str]) -> tuple[int, str]:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                          timeout=15)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def table_name(job_id: str) -> str:
    """An nftables table name unique to the job (letters, digits, _)."""
    return "mhm_block_" + re.sub(r"[^A-Za-z0-9_]", "_", job_id)[:200]


class PortBlock:
    """`with PortBlock(table, port):` drops TCP to/from `port` on this host
    (its network namespace) in a table of its own, removed on exit."""

    def __init__(self, table: str, port: int, runner: Runner = _run,
                 nft: Optional[str] = None) -> None:
        if not 0 < port < 65536:
            raise ConfigError(f"PortBlock: port {port} out of range")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", table):
            raise ConfigError(f"PortBlock: bad nftables table name {table!r}")
        self.table = table
        self.port = port
        self.runner = runner
        self.nft = nft or shutil.which("nft") or "/usr/sbin/nft"
        self.added = False

    def script(self) -> str:
        return (f"table inet {self.table} {{\n"
                f"  chain input {{ type filter hook input priority 0; policy accept;\n"
                f"    tcp dport {self.port} drop\n    tcp sport {self.port} drop\n  }}\n"
                f"  chain output {{ type filter hook output priority 0; policy accept;\n"
                f"    tcp dport {self.port} drop\n    tcp sport {self.port} drop\n  }}\n"
                f"}}\n")

    def add(self) -> None:
        self.added = True  # before: a half-applied script is removed too
        status, output = self.runner([self.nft, "-f", "-"], self.script())
        if status != 0:
            self.remove()
            raise LabError(f"nft could not add table inet {self.table} dropping port "
                           f"{self.port} (exit {status}): {output}")

    def exists(self) -> bool:
        return self.runner([self.nft, "list", "table", "inet", self.table], None)[0] == 0

    def remove(self) -> None:
        """Delete the table (idempotent); LabError if it is still there."""
        self.runner([self.nft, "delete", "table", "inet", self.table], None)
        if self.exists():
            raise LabError(f"nft table inet {self.table} could not be removed")
        self.added = False

    def __enter__(self) -> "PortBlock":
        self.add()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


__all__ = ["PortBlock", "Runner", "table_name"]
