"""`--shard I/N`: this controller's share of the host pairs, and the job identity.

Shards split the *pairs*, and pairs never share a host, so no two shards
share a host.  The split is deterministic: pairs are ordered by their host
ids and shard I takes every N-th, starting at the I-th (round robin keeps
the shards within one pair of each other).  A machine left without a
partner is reported by shard 1 only, so a merge counts it once.

The job identity is what all the shards of one job share and nothing
else: a hash of the control file, the cfg files, the control arguments
and the inventory (not the shard, not the results directory).  Each
shard writes it into results.json; `mhm-report merge` refuses shards
whose identities differ.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, TypeVar

from multihost_migration.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    index: int      # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> "Shard":
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise ConfigError(f"--shard {text!r}: I/N expected (e.g. 1/4)")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or not 1 <= index <= count:
            raise ConfigError(f"--shard {text}: I must be between 1 and N (N >= 1)")
        return cls(index, count)

    def take(self, items: Sequence[T]) -> list[T]:
        """This shard's share of `items` (in the given order)."""
        return [item for i, item in enumerate(items) if i % self.count == self.index - 1]

    def owns_leftovers(self) -> bool:
        return self.index == 1


def shard_pairs(pairs: Sequence[T], leftovers: Sequence[str], shard: Optional[Shard]
                ) -> tuple[list[T], list[str]]:
    if shard is None:
        return list(pairs), list(leftovers)
    return shard.take(pairs), list(leftovers) if shard.owns_leftovers() else []


def _cfg_files(cfg: Path) -> list[Path]:
    """The cfg and every .cfg beside it or below (includes live there)."""
    return sorted({cfg, *cfg.parent.rglob("*.cfg")})


def job_identity(control: Path, cfg: Optional[Path], args: Iterable[str],
                 inventory: str) -> str:
    """sha256 over the control file, the cfg files (`cfg`, else the default
    cfg beside the control file), the arguments, the inventory."""
    from multihost_migration.server.selection import default_cfg
    if cfg is None:
        try:
            cfg = default_cfg(control)
        except ConfigError:
            cfg = control
    digest = hashlib.sha256()

    def part(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    part("control", control.read_bytes())
    for path in _cfg_files(cfg):
        part(f"cfg:{path.relative_to(cfg.parent)}", path.read_bytes() if path.is_file() else b"")
    for arg in args:
        part("arg", arg.encode())
    part("inventory", inventory.encode())
    return digest.hexdigest()
