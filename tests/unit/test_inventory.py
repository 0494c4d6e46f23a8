"""server/inventory.py: plain machines files, Ansible YAML inventories, tmt topologies."""

from __future__ import annotations

from pathlib import Path

import pytest

from multihost_migration.errors import ConfigError
from multihost_migration.server.inventory import (
    HostSpec, form_pairs, parse_ansible, parse_plain, parse_topology, pool_from_args,
    read_machines_file)

ANSIBLE = """\
all:
  vars:
    ansible_user: root
  hosts:
    h9:
      ansible_host: 10.0.0.9
  children:
    pair_a:
      hosts:
        h1: {ansible_host: 10.0.0.1, ansible_port: 2222}
        h3:
          ansible_host: 10.0.0.3
    rest:
      vars:
        ansible_ssh_private_key_file: /keys/id
        ansible_user: tester
      hosts:
        h2:
        h4:
          ansible_user: other
        h5:
"""

TOPOLOGY = """\
guest:
  name: h1
  role: pair1
  hostname: 10.0.0.1
guests:
  h1: {name: h1, role: pair1, hostname: 10.0.0.1}
  h2: {name: h2, role: pair2, hostname: 10.0.0.2}
  h3: {name: h3, role: pair1, hostname: 10.0.0.3}
  h4: {name: h4, role: pair2, hostname: 10.0.0.4}
roles:
  pair1: [h1, h3]
  pair2: [h2, h4]
"""


def test_plain_file_sorted_deduplicated_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "machines"
    path.write_text("h2 # second\nh1, root@h3:2222\n\nh2\n")
    pool = read_machines_file(path)
    assert pool.machines() == ["h1", "h2", "root@h3:2222"]
    assert pool.pairs == ()


def test_plain_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "machines"
    path.write_text("h1\nh2:port\n")
    with pytest.raises(ConfigError) as err:
        read_machines_file(path)
    assert str(err.value).startswith(f"{path}:2: ") and "bad port" in str(err.value)


def test_ansible_vars_inherit_and_host_wins() -> None:
    pool = parse_ansible(ANSIBLE, "inv.yml")
    assert [h.name for h in pool.hosts] == ["h1", "h2", "h3", "h4", "h5", "h9"]
    assert pool.host("h1") == HostSpec("h1", "10.0.0.1", "root", 2222, None)
    assert pool.host("h4") == HostSpec("h4", None, "other", None, "/keys/id")
    assert pool.host("h2") == HostSpec("h2", None, "tester", None, "/keys/id")
    assert pool.host("h1") is not None and pool.host("h1").machine() == "root@h1:2222"  # type: ignore[union-attr]
    assert pool.host("h4").ssh_overrides() == {"key_filename": "/keys/id"}  # type: ignore[union-attr]
    assert pool.host("h9").ssh_overrides() == {"address": "10.0.0.9"}  # type: ignore[union-attr]


def test_ansible_group_of_two_is_a_pair_others_paired_in_order() -> None:
    pool = parse_ansible(ANSIBLE, "inv.yml")
    assert pool.pairs == (("h1", "h3"),)
    pairs, left = form_pairs(pool.machines(), pool, 2)
    assert pairs == [["root@h1:2222", "root@h3"], ["tester@h2", "other@h4"],
                     ["tester@h5", "root@h9"]]
    assert left == []


@pytest.mark.parametrize("text, line, words", [
    ("all:\n  hosts:\n    h1:\n      ansible_port: x22\n", 4, "ansible_port 'x22'"),
    ("all:\n  hosts: [h1, h2]\n", 2, "a mapping is expected"),
    ("all:\n  hostz:\n    h1:\n", 2, "unknown key 'hostz'"),
    ("all:\n  children:\n    a:\n      hosts: {h1: , h2: }\n    b:\n"
     "      hosts: {h2: , h3: }\n", 5, "host h2 is in two pair groups, a and b"),
    ("all:\n  hosts:\n    h1: [\n", None, "not valid YAML"),
])
def test_ansible_errors_name_file_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_ansible(text, "inv.yml")
    assert words in str(err.value)
    assert err.value.filename == "inv.yml"
    if line is not None:
        assert err.value.line == line


def test_yaml_inventory_is_sniffed_without_extension(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(ANSIBLE)
    assert len(read_machines_file(path).hosts) == 6


def test_topology_guests_and_roles() -> None:
    pool = parse_topology(TOPOLOGY, "topo.yaml")
    assert pool.machines() == ["h1", "h2", "h3", "h4"]
    assert pool.host("h3") == HostSpec("h3", address="10.0.0.3")
    assert pool.pairs == (("h1", "h3"), ("h2", "h4"))
    assert form_pairs(pool.machines(), pool, 2)[0] == [["h1", "h3"], ["h2", "h4"]]


def test_topology_errors() -> None:
    with pytest.raises(ConfigError, match="needs 'guests'"):
        parse_topology("roles: {}\n", "t.yaml")
    with pytest.raises(ConfigError) as err:
        parse_topology("guests:\n  h1: {hostname: a}\nroles:\n  r: [h1, h7]\n", "t.yaml")
    assert "role r names unknown guest(s) h7" in str(err.value) and err.value.line == 4


def test_topology_from_environment_only_without_other_hosts(tmp_path: Path) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text(TOPOLOGY)
    env = {"TMT_TOPOLOGY_YAML": str(path)}
    assert len(pool_from_args("", None, None, env).hosts) == 4
    assert pool_from_args("a,b", None, None, env).machines() == ["a", "b"]


def test_plain_pairs_as_before() -> None:
    pool = parse_plain("h1 h2 h3", "-m")
    pairs, left = form_pairs(pool.machines(), pool, 2)
    assert pairs == [["h1", "h2"]] and left == ["h3"]


def test_ssh_target_takes_the_inventory_address_and_key() -> None:
    from multihost_migration.server.inventory import ssh_target
    pool = parse_ansible(ANSIBLE, "inv.yml")
    defaults = {"user": "root", "port": 22, "key_filename": "/default/key"}
    target = ssh_target("root@h1:2222", defaults, pool)
    assert (target.hostname, target.connect_address, target.port, target.key_filename) == (
        "h1", "10.0.0.1", 2222, "/default/key")
    target = ssh_target("other@h4", defaults, pool)
    assert (target.connect_address, target.user, target.key_filename) == (
        "h4", "other", "/keys/id")
    assert ssh_target("h7", defaults, None).connect_address == "h7"
