"""server/sharding.py: disjoint, deterministic shards; the job identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from multihost_migration.errors import ConfigError
from multihost_migration.server.inventory import form_pairs, parse_plain
from multihost_migration.server.sharding import Shard, job_identity, shard_pairs


@pytest.mark.parametrize("hosts", [2, 3, 8, 9, 17])
@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_shards_are_disjoint_cover_everything_and_are_deterministic(hosts: int,
                                                                    count: int) -> None:
    pool = parse_plain(" ".join(f"h{i}" for i in range(hosts)), "-m")
    pairs, left = form_pairs(pool.machines(), pool, 2)
    shards = [shard_pairs(pairs, left, Shard(i, count)) for i in range(1, count + 1)]
    seen: list[str] = []
    for mine, _ in shards:
        seen.extend(m for p in mine for m in p)
    assert len(seen) == len(set(seen))                       # no host in two shards
    assert sorted(seen) == sorted(m for p in pairs for m in p)  # together: every pair
    assert sum(len(lo) for _, lo in shards) == len(left)      # leftovers counted once
    sizes = [len(mine) for mine, _ in shards]
    assert max(sizes) - min(sizes) <= 1
    again = [shard_pairs(*form_pairs(pool.machines(), pool, 2), Shard(i, count))
             for i in range(1, count + 1)]
    assert again == shards


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "1", "-1/2"])
def test_bad_shard_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--shard"):
        Shard.parse(text)


def test_shard_parse_and_str() -> None:
    assert str(Shard.parse(" 2 / 4 ")) == "2/4"


def test_identity_changes_with_each_input_only(tmp_path: Path) -> None:
    control = tmp_path / "control.srv"
    control.write_text("pass\n")
    cfgdir = tmp_path / "cfg"
    cfgdir.mkdir()
    cfg = cfgdir / "main.cfg"
    cfg.write_text("include sub.cfg\n")
    (cfgdir / "sub.cfg").write_text("a = 1\n")
    base = job_identity(control, cfg, ["x=1"], "inv")
    assert job_identity(control, cfg, ["x=1"], "inv") == base
    assert job_identity(control, cfg, ["x=2"], "inv") != base
    assert job_identity(control, cfg, ["x=1"], "inv2") != base
    (cfgdir / "sub.cfg").write_text("a = 2\n")
    changed_cfg = job_identity(control, cfg, ["x=1"], "inv")
    assert changed_cfg != base
    control.write_text("pass  \n")
    assert job_identity(control, cfg, ["x=1"], "inv") not in (base, changed_cfg)
