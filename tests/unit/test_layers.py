"""The package's import layers, checked from the source (issue #14).

Every module's imports are read with `ast`: at module level, inside
functions and under `if TYPE_CHECKING:` alike; relative imports are resolved
against the importing module's package; `from pkg import name` counts as an
import of the module `pkg.name` when there is one.  Then:

1. every module has a layer (LAYERS; the most specific prefix wins);
2. no module imports one of a higher layer (lower never imports upper);
3. client/ and server/ never import each other (`client | server`);
4. the controller (server/) never reaches, directly or through what it
   imports (the packages' `__init__` included), the process, QMP or console
   side of qemu/ and guest/, nor client/, aexpect or qemu.qmp: only the pure
   parsers in CONTROLLER_MAY_USE;
   (a known exception, with its reason, is listed in KNOWN_VIA);
5. a runnable scenario (a scenarios/ module with `run()`) is nobody's base:
   shared bases live in non-runnable modules (scenarios/_*.py).

A violation names the importing file:line.  Also a script:

    python tests/unit/test_layers.py     # prints the violations, exit 1 if any
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "multihost_migration"

#: Lowest first.  Names are relative to the package ("" is the package itself).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("", "errors", "params", "verdicts", "results_format", "poller", "relay",
              "imagespec")),
    ("transport, parsers, report writers", ("cartesian", "sync", "remote", "status",
                                            "report", "abort_watch")),
    ("qemu, guest, storage", ("qemu", "guest", "storage", "netcheck")),
    ("migration", ("plan", "migration", "virt_utils", "rootcause", "storage_copy")),
    ("scenarios", ("scenarios", "legacy")),   # legacy: the legacy API (issue #17)
    ("client | server", ("client", "server")),
    ("lab, CLIs", ("lab", "server.cli", "report.cli")),
)

#: Same layer, yet never importing each other.
APART = (("client", "server"),)

#: What the controller (server/) never loads: the QEMU process, QMP and
#: console side of qemu/ and guest/, the client, and the libraries under
#: them.  Whatever imports one of these (at run time) is that side too; the
#: pure parsers (qemu.config, qemu.tls, qemu.stats, imagespec...) are not.
CONTROLLER = "server"
CONTROLLER_NEVER = ("client", "qemu.process", "qemu.qmp_channel", "qemu.link", "qemu.vm",
                    "qemu.env", "qemu.heartbeat", "guest.console", "guest.checks")
CONTROLLER_NEVER_EXTERNAL = ("aexpect", "qemu")   # qemu.qmp is the `qemu` namespace

#: Upward imports that are fine: lazy (inside a function, never at import
#: time) re-exports of the package's public names (PEP 562 __getattr__).
LAZY_FACADES = frozenset({("", "migration")})

#: Known violations, each with its reason; an entry that no longer matches
#: fails too, so that it is removed once fixed.
#: The controller reaching a forbidden module through one of these modules
#: is known (key: the module it passes through).
KNOWN_VIA: Mapping[str, str] = {}


@dataclass(frozen=True)
class Import:
    target: str            # module name inside the package, or "ext:<top-level name>"
    line: int
    import_time: bool      # executed when the module is imported (module level, not TYPE_CHECKING)
    typing_only: bool = False   # under `if TYPE_CHECKING:`: never executed
    member: str = ""            # `from target import member` (not a submodule)


@dataclass
class Module:
    name: str              # relative to the package: "server.dispatch", "" for the package
    path: Path
    is_package: bool
    imports: list[Import] = field(default_factory=list)
    runnable: bool = False  # defines a top-level run()


def _rel(name: str) -> Optional[str]:
    if name == PACKAGE:
        return ""
    if name.startswith(PACKAGE + "."):
        return name[len(PACKAGE) + 1:]
    return None


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


Mode = tuple[bool, bool]     # (runs at import time, typing only)


def _walk(node: ast.AST, mode: Mode) -> Iterator[tuple[ast.AST, Mode]]:
    """Every node, with when it runs."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield child, mode
            yield from _walk(child, (False, mode[1]))
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, (False, True)
                yield from _walk(stmt, (False, True))
            for stmt in child.orelse:
                yield stmt, mode
                yield from _walk(stmt, mode)
        else:
            yield child, mode
            yield from _walk(child, mode)


def parse_module(name: str, path: Path, source: str, is_package: bool,
                 known: Iterable[str]) -> Module:
    """The imports of one module (`name` relative to the package), resolved
    against the module names in `known`."""
    known = set(known) | {name}
    module = Module(name, path, is_package)
    package = name if is_package else name.rpartition(".")[0]
    tree = ast.parse(source, str(path))
    module.runnable = any(isinstance(n, ast.FunctionDef) and n.name == "run"
                          for n in tree.body)
    for node, mode in _walk(tree, (True, False)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                _add(module, alias.name, None, node.lineno, mode, known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                up = node.level - 1
                if up > len(base):
                    raise ValueError(f"{path}:{node.lineno}: relative import beyond the package")
                base = base[:len(base) - up] if up else base
                absolute = _join(PACKAGE, *base, node.module or "")
            else:
                absolute = node.module or ""
            for alias in node.names:
                _add(module, absolute, alias.name, node.lineno, mode, known)
    return module


def _add(module: Module, absolute: str, member: Optional[str], line: int,
         mode: Mode, known: set[str]) -> None:
    rel = _rel(absolute)
    if rel is None:
        module.imports.append(Import("ext:" + absolute.split(".")[0], line, *mode))
        return
    if member is not None and member != "*" and _join(rel, member) in known:
        rel, member = _join(rel, member), None     # from pkg import submodule
    module.imports.append(Import(rel, line, *mode, member=member or ""))


def resolve_lazy(modules: Mapping[str, Module]) -> None:
    """`from pkg import Name`, where pkg's __init__ serves Name lazily (PEP 562)
    and names its source in an import (under TYPE_CHECKING, say): an import
    of that source too, at the importer's line."""
    bindings = {name: {i.member: i.target for i in m.imports if i.member}
                for name, m in modules.items() if m.is_package}
    for module in modules.values():
        extra = [Import(bindings[i.target][i.member], i.line, i.import_time, i.typing_only)
                 for i in module.imports
                 if i.member and i.target in bindings and i.target != module.name
                 and i.member in bindings[i.target]]
        module.imports += [i for i in extra if i not in module.imports]


def load_package(root: Path = ROOT / PACKAGE) -> dict[str, Module]:
    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        files[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    modules = {name: parse_module(name, path, path.read_text(), is_package, files)
               for name, (path, is_package) in files.items()}
    resolve_lazy(modules)
    return modules


def _matches(name: str, prefix: str) -> bool:
    return prefix == "" and name == "" or prefix != "" and (
        name == prefix or name.startswith(prefix + "."))


def layer_of(name: str) -> Optional[int]:
    best: Optional[tuple[int, int]] = None     # (prefix length, layer)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if _matches(name, prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return best[1] if best else None


def _full(name: str) -> str:
    return _join(PACKAGE, name)


def _where(module: Module, imp: Import) -> str:
    try:
        shown = module.path.relative_to(ROOT)
    except ValueError:
        shown = module.path
    return f"{shown}:{imp.line}"


def check(modules: Mapping[str, Module]) -> list[str]:
    """Every violation of rules 1-5, as 'file:line: what'."""
    resolve_lazy(modules)
    problems: list[str] = []
    for module in modules.values():
        mine = layer_of(module.name)
        if mine is None:
            problems.append(f"{module.path}: {_full(module.name)} has no layer: add it to "
                            f"LAYERS in {Path(__file__).name}")
            continue
        for imp in module.imports:
            problems += _edge_problems(module, mine, imp)
    problems += _controller_problems(modules)
    problems += _scenario_problems(modules)
    return list(dict.fromkeys(problems))


def _edge_problems(module: Module, mine: int, imp: Import) -> list[str]:
    if imp.target.startswith("ext:"):
        return []
    theirs = layer_of(imp.target)
    if theirs is None:
        return []    # reported as the target's own problem
    where = _where(module, imp)
    if theirs > mine:
        if (module.name, imp.target) in LAZY_FACADES and not imp.import_time:
            return []
        return [f"{where}: {_full(module.name)} ({LAYERS[mine][0]}) imports "
                f"{_full(imp.target)} ({LAYERS[theirs][0]}): a lower layer never imports "
                f"an upper one"]
    for a, b in APART:
        for x, y in ((a, b), (b, a)):
            if _matches(module.name, x) and _matches(imp.target, y):
                return [f"{where}: {_full(module.name)} imports {_full(imp.target)}: "
                        f"{a}/ and {b}/ never import each other"]
    return []


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts))]


def _reached(modules: Mapping[str, Module], start: str) -> dict[str, tuple[str, Import]]:
    """Every module `start` may load (an import loads the packages above
    the module too), each with the first (importer, import) found.  Its own
    imports count even under TYPE_CHECKING; further down, only those that
    run."""
    via: dict[str, tuple[str, Import]] = {}
    todo = [start]
    while todo:
        name = todo.pop(0)
        module = modules.get(name)
        if module is None:
            continue
        for imp in module.imports:
            if (name, imp.target) in LAZY_FACADES and not imp.import_time or \
                    imp.typing_only and name != start:
                continue
            targets = [imp.target] if imp.target.startswith("ext:") else \
                [p for p in _parents(imp.target) if p] + [imp.target]
            for target in targets:
                if target not in via and target != start:
                    via[target] = (name, imp)
                    todo.append(target)
    return via


def _forbidden_for_controller(name: str) -> bool:
    if name.startswith("ext:"):
        return name[4:] in CONTROLLER_NEVER_EXTERNAL
    return any(_matches(name, p) for p in CONTROLLER_NEVER)


def _controller_problems(modules: Mapping[str, Module]) -> list[str]:
    """Each import that takes the controller to a forbidden module, once
    (what that module imports in turn is not repeated)."""
    edges: dict[tuple[str, int, str], list[str]] = {}
    for start in sorted(n for n in modules if _matches(n, CONTROLLER)):
        reached = _reached(modules, start)
        for target in sorted(reached):
            chain = _chain(reached, target)
            if _forbidden_for_controller(target) and \
                    not any(_forbidden_for_controller(n) for n in chain[:-1]):
                importer, imp = reached[target]
                edges.setdefault((importer, imp.line, target), chain)
    problems, known_hits = [], set()
    for (importer, line, target), chain in sorted(edges.items()):
        shown = target.replace("ext:", "")
        known = [m for m in chain[:-1] if m in KNOWN_VIA]
        if known:
            known_hits.update(known)
            continue
        path = " -> ".join(n.replace("ext:", "") for n in chain)
        imp = next(i for i in modules[importer].imports if i.line == line)
        problems.append(f"{_where(modules[importer], imp)}: the controller reaches {shown} "
                        f"({path})")
    for key in set(KNOWN_VIA) - known_hits:
        problems.append(f"KNOWN_VIA lists {key!r}, through which the controller reaches "
                        f"nothing forbidden any more: remove it")
    return problems


def _chain(reached: Mapping[str, tuple[str, Import]], target: str) -> list[str]:
    """start -> ... -> target, the way `_reached` found it."""
    out = [target]
    while out[-1] in reached and len(out) < 100:
        out.append(reached[out[-1]][0])
    return list(reversed(out))


def _scenario_problems(modules: Mapping[str, Module]) -> list[str]:
    problems = []
    for module in modules.values():
        for imp in module.imports:
            target = modules.get(imp.target)
            if (target is not None and target is not module and target.runnable
                    and _matches(target.name, "scenarios")):
                problems.append(f"{_where(module, imp)}: {_full(module.name)} imports the "
                                f"runnable scenario {_full(target.name)}: move what it "
                                f"shares into a non-runnable module (scenarios/_*.py)")
    return problems


# -- the tests -------------------------------------------------------------------

def test_the_package_keeps_its_layers() -> None:
    problems = check(load_package())
    assert not problems, "\n".join(problems)


def test_a_planted_upward_import_fails_with_file_and_line() -> None:
    modules = load_package()
    modules["errors"] = parse_module("errors", ROOT / PACKAGE / "errors.py",
                                     "import os\n\nfrom multihost_migration.qemu import vm\n",
                                     False, modules)
    problems = [p for p in check(modules) if "errors" in p]
    assert problems[0] == (
        "multihost_migration/errors.py:3: multihost_migration.errors (base) imports "
        "multihost_migration.qemu.vm (qemu, guest, storage): a lower layer never imports "
        "an upper one")
    # and the controller, which uses errors.py, now reaches the VM through it
    assert problems[1].startswith("multihost_migration/errors.py:3: the controller "
                                  "reaches qemu.vm (server."), problems


def test_a_module_without_a_layer_fails() -> None:
    modules = load_package()
    modules["planted"] = parse_module("planted", ROOT / PACKAGE / "planted.py", "", False,
                                      modules)
    [problem] = [p for p in check(modules) if "planted" in p]
    assert "multihost_migration.planted has no layer" in problem


def test_type_checking_and_relative_imports_count() -> None:
    source = ("from typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n"
              "    from ..migration import MultihostMigration\n"
              "def later() -> None:\n"
              "    from . import vm\n")
    modules = load_package()
    modules["qemu.planted"] = parse_module("qemu.planted", ROOT / PACKAGE / "qemu/planted.py",
                                           source, False, modules)
    problems = [p for p in check(modules) if "planted" in p]
    assert problems == ["multihost_migration/qemu/planted.py:3: multihost_migration.qemu."
                        "planted (qemu, guest, storage) imports multihost_migration.migration "
                        "(migration): a lower layer never imports an upper one"], problems
    imports = modules["qemu.planted"].imports
    assert [(i.target, i.import_time) for i in imports] == [
        ("ext:typing", True), ("migration", False), ("qemu.vm", False)]


def test_the_controller_may_not_reach_the_client_or_the_vm() -> None:
    modules = load_package()
    modules["server.planted"] = parse_module(
        "server.planted", ROOT / PACKAGE / "server/planted.py",
        "from ..client import job\nimport aexpect\n", False, modules)
    problems = [p for p in check(modules) if "server/planted.py" in p]
    assert any("server/planted.py:1: " in p and "client/ and server/ never import" in p
               for p in problems), problems
    assert any("server/planted.py:1: the controller reaches client.job" in p
               for p in problems), problems
    assert any("server/planted.py:2: the controller reaches aexpect" in p
               for p in problems), problems


def test_a_lazily_served_name_counts_as_an_import_of_its_source() -> None:
    modules = load_package()
    modules["server.planted"] = parse_module(
        "server.planted", ROOT / PACKAGE / "server/planted.py",
        "from multihost_migration.qemu import VM\n"
        "from multihost_migration import MultihostMigration\n", False, modules)
    problems = [p for p in check(modules) if "planted" in p]
    assert any("server/planted.py:1: the controller reaches qemu.vm" in p for p in problems)
    assert any("(server.planted -> migration -> qemu." in p for p in problems), problems


def test_a_runnable_scenario_is_nobodys_base() -> None:
    modules = load_package()
    modules["scenarios.planted"] = parse_module(
        "scenarios.planted", ROOT / PACKAGE / "scenarios/planted.py",
        "from multihost_migration.scenarios import migration_integrity\n"
        "def run() -> None: ...\n", False, modules)
    problems = [p for p in check(modules) if "planted" in p]
    assert len(problems) == 1 and "runnable scenario multihost_migration.scenarios." \
        "migration_integrity" in problems[0], problems


def test_importing_the_controller_loads_no_client_qemu_or_console_code() -> None:
    """At run time too: the server CLI and the server test import nothing of it."""
    code = ("import sys, multihost_migration.server.cli, multihost_migration\n"
            "import server_tests.multihost_migration.multihost_migration\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('aexpect', 'qemu')\n"
            "             or m.startswith(('multihost_migration.client',\n"
            "                              'multihost_migration.qemu',\n"
            "                              'multihost_migration.guest',\n"
            "                              'multihost_migration.migration')))\n"
            "print(' '.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == ""


def test_the_package_serves_the_guide_names_lazily() -> None:
    code = ("import sys, multihost_migration\n"
            "assert 'multihost_migration.migration' not in sys.modules\n"
            "from multihost_migration import MigrationData, MultihostMigration\n"
            "from multihost_migration.migration import MultihostMigration as M\n"
            "assert MultihostMigration is M and MigrationData.__name__ == 'MigrationData'\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


if __name__ == "__main__":
    found = check(load_package())
    print("\n".join(found) or "import layers: ok")
    sys.exit(1 if found else 0)
