"""The pool of hosts a job runs on, read once from what the lab provides.

Three formats, one result (`Pool`):

* a plain machines file (`-M`): host specs (``[user@]host[:port]``),
  comma or space separated, ``#`` comments;
* an Ansible YAML inventory (`-M`): groups with ``hosts``, ``children``
  and ``vars``; per host ``ansible_host`` (the address to connect to),
  ``ansible_user``, ``ansible_port``, ``ansible_ssh_private_key_file``
  (group vars apply to the group's hosts and its children's, a host's own
  vars win).  The inventory name is the host id;
* tmt's topology file (``--topology FILE``, or ``$TMT_TOPOLOGY_YAML``):
  ``guests`` (name -> ``hostname``) and ``roles`` (role -> guest names).

Pairs: a group (Ansible) or role (tmt) of exactly two hosts and no child
groups is a pair and is kept as such; the other hosts are paired as ``-m``
pairs them (sorted, two by two).  A host in two pair groups is an error
naming both.  Every error names the file, and the line where there is one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import yaml

from multihost_migration.errors import ConfigError, RemoteError
from multihost_migration.remote import SshTarget

TOPOLOGY_ENV = "TMT_TOPOLOGY_YAML"
PAIR_SIZE = 2


@dataclass(frozen=True)
class HostSpec:
    """One host: its id and how to reach it (None: the job's defaults)."""
    name: str
    address: Optional[str] = None
    user: Optional[str] = None
    port: Optional[int] = None
    key_file: Optional[str] = None

    def machine(self) -> str:
        """The ``[user@]host[:port]`` spec `-m` would have given."""
        return (f"{self.user}@" if self.user else "") + self.name + \
            (f":{self.port}" if self.port is not None else "")

    def ssh_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.address and self.address != self.name:
            out["address"] = self.address
        if self.key_file:
            out["key_filename"] = self.key_file
        return out


@dataclass(frozen=True)
class Pool:
    """The hosts (sorted by id) and the pairs the inventory fixes."""
    hosts: tuple[HostSpec, ...] = ()
    pairs: tuple[tuple[str, ...], ...] = ()
    sources: tuple[str, ...] = field(default=())

    def machines(self) -> list[str]:
        return [h.machine() for h in self.hosts]

    def host(self, name: str) -> Optional[HostSpec]:
        return next((h for h in self.hosts if h.name == name), None)

    def identity(self) -> str:
        """What the inventory contributes to the job identity."""
        return json.dumps({"hosts": [vars(h) for h in self.hosts],
                           "pairs": [list(p) for p in self.pairs]}, sort_keys=True)

    def merged(self, other: "Pool") -> "Pool":
        hosts = {h.name: h for h in self.hosts}
        for h in other.hosts:
            if h.name in hosts and hosts[h.name] != h:
                raise ConfigError(f"host {h.name} is given twice, differently "
                                  f"({', '.join(self.sources + other.sources)})")
            hosts[h.name] = h
        return _checked_pool(list(hosts.values()), list(self.pairs + other.pairs),
                             self.sources + other.sources, None)


def pool_from_args(machines: str, machines_file: Optional[Path],
                   topology: Optional[Path],
                   environ: Mapping[str, str] = os.environ) -> Pool:
    """-m, -M (plain or Ansible YAML) and --topology / $TMT_TOPOLOGY_YAML
    (the variable only when no hosts were given otherwise)."""
    pool = parse_plain(machines, "-m")
    if machines_file is not None:
        pool = pool.merged(read_machines_file(machines_file))
    if topology is None and not pool.hosts and environ.get(TOPOLOGY_ENV):
        topology = Path(environ[TOPOLOGY_ENV])
    if topology is not None:
        pool = pool.merged(parse_topology(_read(topology), str(topology)))
    return pool


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the machines file: {err}", filename=str(path)) from err


def read_machines_file(path: Path) -> Pool:
    """A plain machines file or an Ansible YAML inventory (sniffed)."""
    text = _read(path)
    if _looks_like_yaml_inventory(text, path):
        return parse_ansible(text, str(path))
    return parse_plain(text, str(path))


def _looks_like_yaml_inventory(text: str, path: Path) -> bool:
    if path.suffix in (".yml", ".yaml"):
        return True
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and any(
        k == "all" or isinstance(v, dict) and {"hosts", "children", "vars"} & set(v)
        for k, v in data.items())


def _spec(item: str, filename: str, line: Optional[int]) -> HostSpec:
    try:
        target = SshTarget.parse(item)
    except RemoteError as err:
        raise ConfigError(str(err), filename=filename, line=line) from err
    user, _, _ = item.rpartition("@")
    port = target.port if item.rpartition("@")[2].count(":") == 1 else None
    return HostSpec(target.hostname, user=user or None, port=port)


def parse_plain(text: str, filename: str) -> Pool:
    """Host specs, comma or space separated; ``#`` starts a comment."""
    hosts: dict[str, HostSpec] = {}
    for number, line in enumerate(text.splitlines(), 1):
        for item in line.split("#", 1)[0].replace(",", " ").split():
            spec = _spec(item, filename, number if filename != "-m" else None)
            if spec.name in hosts and hosts[spec.name] != spec:
                raise ConfigError(f"host {spec.name} given twice, differently "
                                  f"({hosts[spec.name].machine()}, {item})",
                                  filename=filename, line=number)
            hosts[spec.name] = spec
    return _checked_pool(list(hosts.values()), [], (filename,), None)


# -- YAML with line numbers ---------------------------------------------------


def _compose(text: str, filename: str) -> Optional[yaml.Node]:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ConfigError(f"not valid YAML: {getattr(err, 'problem', err)}", filename=filename,
                          line=mark.line + 1 if mark is not None else None) from err


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _mapping(node: Optional[yaml.Node], filename: str, what: str
             ) -> list[tuple[str, yaml.Node, int]]:
    """(key, value node, line) of a YAML mapping; null is an empty one."""
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
        return []
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{what}: a mapping is expected", filename=filename, line=_line(node))
    out = []
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise ConfigError(f"{what}: keys must be names", filename=filename, line=_line(key))
        out.append((str(key.value), value, _line(key)))
    return out


def _scalar(node: yaml.Node, filename: str, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.tag.endswith(":null"):
        raise ConfigError(f"{what}: a value is expected", filename=filename, line=_line(node))
    return str(node.value)


def _vars(node: Optional[yaml.Node], filename: str, where: str) -> dict[str, tuple[str, int]]:
    return {k: (_scalar(v, filename, f"{where}: {k}"), line)
            for k, v, line in _mapping(node, filename, where)}


# -- Ansible --------------------------------------------------------------------

_ANSIBLE_KEYS = ("hosts", "children", "vars")


class _Ansible:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.host_vars: dict[str, dict[str, tuple[str, int]]] = {}
        self.host_line: dict[str, int] = {}
        self.group_hosts: dict[str, set[str]] = {}
        self.group_line: dict[str, int] = {}
        self.leaf: dict[str, bool] = {}

    def group(self, name: str, node: yaml.Node, line: int,
              inherited: dict[str, tuple[str, int]], path: tuple[str, ...]) -> set[str]:
        if name in path:
            raise ConfigError(f"group {name} contains itself", filename=self.filename, line=line)
        parts = {k: (v, ln) for k, v, ln in _mapping(node, self.filename, f"group {name}")}
        for key, (_, ln) in parts.items():
            if key not in _ANSIBLE_KEYS:
                raise ConfigError(f"group {name}: unknown key {key!r} (expected hosts, "
                                  "children or vars)", filename=self.filename, line=ln)
        group_vars = dict(inherited)
        if "vars" in parts:
            group_vars.update(_vars(parts["vars"][0], self.filename, f"group {name} vars"))
        members: set[str] = set()
        if "hosts" in parts:
            for host, hnode, hline in _mapping(parts["hosts"][0], self.filename,
                                               f"group {name} hosts"):
                own = _vars(hnode, self.filename, f"host {host}")
                merged = dict(self.host_vars.get(host, {}))
                for k, v in group_vars.items():
                    merged.setdefault(k, v)
                merged.update(own)
                self.host_vars[host] = merged
                self.host_line.setdefault(host, hline)
                members.add(host)
        children = _mapping(parts["children"][0], self.filename, f"group {name} children") \
            if "children" in parts else []
        for child, cnode, cline in children:
            members |= self.group(child, cnode, cline, group_vars, path + (name,))
        self.group_hosts[name] = self.group_hosts.get(name, set()) | members
        self.group_line.setdefault(name, line)
        self.leaf[name] = self.leaf.get(name, True) and not children
        return members

    def spec(self, host: str) -> HostSpec:
        values = self.host_vars[host]

        def get(key: str) -> Optional[str]:
            return values[key][0] if key in values else None

        port_text = get("ansible_port")
        port = None
        if port_text is not None:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ConfigError(f"host {host}: ansible_port {port_text!r} is not a TCP port",
                                  filename=self.filename, line=values["ansible_port"][1])
            port = int(port_text)
        _spec(host, self.filename, self.host_line[host])   # a usable name
        return HostSpec(host, address=get("ansible_host"), user=get("ansible_user"),
                        port=port, key_file=get("ansible_ssh_private_key_file"))


def parse_ansible(text: str, filename: str) -> Pool:
    """An Ansible YAML inventory: every top-level key is a group."""
    root = _compose(text, filename)
    if root is None:
        raise ConfigError("empty inventory", filename=filename)
    inv = _Ansible(filename)
    for name, node, line in _mapping(root, filename, "inventory"):
        inv.group(name, node, line, {}, ())
    if not inv.host_vars:
        raise ConfigError("the inventory names no host", filename=filename)
    pairs = [(g, tuple(sorted(h)), inv.group_line[g]) for g, h in inv.group_hosts.items()
             if g not in ("all", "ungrouped") and inv.leaf[g] and len(h) == PAIR_SIZE]
    return _checked_pool([inv.spec(h) for h in inv.host_vars], pairs, (filename,), filename)


# -- tmt ------------------------------------------------------------------------


def parse_topology(text: str, filename: str) -> Pool:
    """tmt's topology: ``guests`` (with ``hostname``) and ``roles``."""
    root = _compose(text, filename)
    top = {k: (v, ln) for k, v, ln in _mapping(root, filename, "topology")}
    if "guests" not in top:
        raise ConfigError("a tmt topology needs 'guests'", filename=filename)
    hosts = []
    for name, node, line in _mapping(top["guests"][0], filename, "guests"):
        fields = _vars(node, filename, f"guest {name}")
        _spec(name, filename, line)
        address = fields.get("hostname", (None, 0))[0]
        hosts.append(HostSpec(name, address=address))
    if not hosts:
        raise ConfigError("the topology names no guest", filename=filename)
    pairs = []
    roles = top.get("roles")
    for role, node, line in _mapping(roles[0] if roles else None, filename, "roles"):
        if not isinstance(node, yaml.SequenceNode):
            raise ConfigError(f"role {role}: a list of guest names is expected",
                              filename=filename, line=line)
        members = tuple(sorted(_scalar(n, filename, f"role {role}") for n in node.value))
        unknown = [m for m in members if m not in {h.name for h in hosts}]
        if unknown:
            raise ConfigError(f"role {role} names unknown guest(s) {', '.join(unknown)}",
                              filename=filename, line=line)
        if len(members) == PAIR_SIZE:
            pairs.append((role, members, line))
    return _checked_pool(hosts, pairs, (filename,), filename)


def _checked_pool(hosts: Iterable[HostSpec], pairs: Iterable[Any],
                  sources: tuple[str, ...], filename: Optional[str]) -> Pool:
    """Pairs given as (group, hosts, line) are checked for overlaps."""
    owner: dict[str, str] = {}
    out: list[tuple[str, ...]] = []
    for pair in pairs:
        if isinstance(pair, tuple) and len(pair) == 3 and isinstance(pair[1], tuple):
            group, members, line = pair
            for host in members:
                if host in owner:
                    raise ConfigError(f"host {host} is in two pair groups, {owner[host]} "
                                      f"and {group}", filename=filename, line=line)
                owner[host] = group
            out.append(members)
        else:
            out.append(tuple(pair))
    return Pool(tuple(sorted(hosts, key=lambda h: h.name)), tuple(sorted(out)), sources)


def form_pairs(machines: list[str], pool: Optional[Pool], n: int
               ) -> tuple[list[list[str]], list[str]]:
    """The pool's fixed pairs (those whose hosts are all among `machines`),
    then the other machines `n` by `n` in order; the leftovers."""
    by_id = {SshTarget.parse(m).hostname: m for m in machines}
    fixed: list[list[str]] = []
    used: set[str] = set()
    if pool is not None and n == PAIR_SIZE:
        for pair in pool.pairs:
            if all(h in by_id for h in pair):
                fixed.append([by_id[h] for h in pair])
                used.update(pair)
    rest = [m for m in machines if SshTarget.parse(m).hostname not in used]
    full = len(rest) - len(rest) % n
    pairs = fixed + [rest[i:i + n] for i in range(0, full, n)]
    return sorted(pairs, key=lambda p: [SshTarget.parse(m).hostname for m in p]), rest[full:]


def ssh_target(machine: str, defaults: Mapping[str, Any], pool: Optional[Pool]) -> SshTarget:
    """How to reach `machine`: its spec, the job's SSH defaults, then what
    the inventory says of that host (address, key)."""
    target = SshTarget.parse(machine, **defaults)
    spec = pool.host(target.hostname) if pool is not None else None
    return dataclasses.replace(target, **spec.ssh_overrides()) if spec else target


def inventory_digest(pool: Pool) -> str:
    return hashlib.sha256(pool.identity().encode()).hexdigest()
