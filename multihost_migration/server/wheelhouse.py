"""The wheelhouse: this suite and its runtime dependencies as wheels.

Built on the controller by `pip wheel` from a copy of the checkout (the
checkout itself is never written to) and kept in a cache directory under a
key that hashes everything that decides its content:

    the package sources (every file of multihost_migration/, pyproject.toml,
    setup.py), the pins of the dependency closure (the versions installed in
    the controller's own environment, so hosts run what the controller runs),
    and the Python the wheels are built for (implementation, X.Y, platform).

    <cache_dir>/<key[:16]>/manifest.json      written last: present = complete
    <cache_dir>/<key[:16]>/wheels/*.whl

Platform wheels (PyYAML, cffi, cryptography, bcrypt, pynacl) only work on a
Python of the same implementation, version and architecture, and on a glibc
at least as new as their manylinux tag says: the manifest records all that and
`check_host_python` refuses a host that does not fit.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

from multihost_migration.errors import HostPythonMismatch, WheelhouseError

log = logging.getLogger(__name__)

PACKAGE = "multihost_migration"
FORMAT = 1
MANIFEST = "manifest.json"
SOURCE_FILES = ("pyproject.toml", "setup.py")
# Never pinned: pip's build isolation brings its own build tools.
_UNPINNED = {"pip", "setuptools", "wheel", PACKAGE.replace("_", "-")}
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_")


@dataclass(frozen=True)
class PythonTarget:
    """The interpreter the wheels are built for; hosts must match it."""
    implementation: str     # sys.implementation.name, e.g. "cpython"
    version: str            # "3.11"
    full_version: str       # "3.11.7"
    machine: str            # platform.machine(), e.g. "x86_64"
    platform: str           # sysconfig.get_platform(), e.g. "linux-x86_64"
    libc: str               # "glibc 2.36", "" when unknown

    @classmethod
    def current(cls) -> "PythonTarget":
        lib, libver = platform.libc_ver()
        return cls(sys.implementation.name, f"{sys.version_info[0]}.{sys.version_info[1]}",
                   platform.python_version(), platform.machine(), sysconfig.get_platform(),
                   f"{lib} {libver}".strip())

    def describe(self) -> str:
        return f"{self.implementation} {self.full_version} ({self.machine}, {self.libc or '?'})"


@dataclass(frozen=True)
class WheelFile:
    file: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    package: str
    version: str
    key: str                    # sha256 hex: sources + pins + python target
    python: PythonTarget
    min_glibc: Optional[str]    # newest glibc a platform wheel needs, "2.34"
    wheels: tuple[WheelFile, ...]

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"manifest format {data.get('format')!r}, expected {FORMAT}")
        return cls(str(data["package"]), str(data["version"]), str(data["key"]),
                   PythonTarget(**data["python"]), data.get("min_glibc"),
                   tuple(WheelFile(**w) for w in data["wheels"]))


@dataclass(frozen=True)
class Wheelhouse:
    path: Path                  # directory holding manifest.json and wheels/
    manifest: Manifest

    @property
    def wheel_dir(self) -> Path:
        return self.path / "wheels"

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def key(self) -> str:
        return self.manifest.key

    def wheel_paths(self) -> list[Path]:
        return [self.wheel_dir / w.file for w in self.manifest.wheels]


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/multihost_migration/wheelhouse (~/.cache/... by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "multihost_migration" / "wheelhouse"


# -- keys ---------------------------------------------------------------------


def source_root() -> Path:
    """The checkout this package runs from (where pyproject.toml is)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / PACKAGE).is_dir():
        raise WheelhouseError(f"{PACKAGE} does not run from a source checkout ({root} has "
                              "no pyproject.toml): cannot build its wheel")
    return root


def source_files(root: Path) -> list[Path]:
    """What the wheel is built from, relative to root, sorted."""
    files = [Path(name) for name in SOURCE_FILES if (root / name).is_file()]
    for path in sorted((root / PACKAGE).rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and "__pycache__" not in rel.parts and path.suffix != ".pyc":
            files.append(rel)
    return files


def dependency_pins(package: str = PACKAGE) -> list[str]:
    """`name==version` of the installed runtime dependency closure of `package`.

    Requirements only wanted by an extra are skipped; other markers are not
    evaluated: a requirement that is installed is pinned (an unused pin is
    harmless to pip), one that is not installed is left to pip.
    """
    pins: dict[str, str] = {}
    todo = [package]
    while todo:
        try:
            dist = metadata.distribution(todo.pop())
        except metadata.PackageNotFoundError:
            continue
        for req in dist.requires or []:
            if re.search(r"\bextra\s*==", req):
                continue
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
            if match is None or _normalize(match.group(1)) in pins:
                continue
            name = _normalize(match.group(1))
            try:
                pins[name] = f"{name}=={metadata.version(name)}"
            except metadata.PackageNotFoundError:
                continue
            todo.append(name)
    return sorted(v for k, v in pins.items() if k not in _UNPINNED)


def compute_key(root: Path, files: Sequence[Path], pins: Sequence[str],
                target: PythonTarget) -> str:
    digest = hashlib.sha256(f"format {FORMAT}\n".encode())
    for rel in files:
        digest.update(f"file {rel.as_posix()}\n".encode())
        digest.update(hashlib.sha256((root / rel).read_bytes()).digest())
    digest.update(("pins\n" + "\n".join(pins) + "\n").encode())
    digest.update(json.dumps(asdict(target), sort_keys=True).encode())
    return digest.hexdigest()


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# -- wheel tags and host compatibility ---------------------------------------


def wheel_glibc(filename: str) -> Optional[tuple[int, int]]:
    """The oldest glibc a wheel runs on; None for pure/non-glibc wheels.

    A compressed platform tag (a.b.c) means any one of them: the minimum.
    """
    parts = filename[:-len(".whl")].split("-")
    if len(parts) < 5:
        raise WheelhouseError(f"not a wheel file name: {filename}")
    found = []
    for tag in parts[-1].split("."):
        if tag in _LEGACY_MANYLINUX or any(tag.startswith(k + "_") for k in _LEGACY_MANYLINUX):
            found.append(_LEGACY_MANYLINUX[tag.split("_")[0]])
        elif (m := _MANYLINUX.match(tag)) is not None:
            found.append((int(m.group(1)), int(m.group(2))))
    return min(found) if found else None


def min_glibc(filenames: Sequence[str]) -> Optional[str]:
    needs = [v for v in (wheel_glibc(f) for f in filenames) if v is not None]
    return "%d.%d" % max(needs) if needs else None


def check_host_python(manifest: Manifest, host: str, python: str,
                      info: Mapping[str, Any]) -> None:
    """Refuse a host Python that cannot use the wheels (info: see install.PROBE)."""
    want = manifest.python
    have = (f"{info.get('implementation')} {info.get('full_version')} "
            f"({info.get('machine')}, {info.get('libc') or '?'})")

    def refuse(reason: str) -> None:
        raise HostPythonMismatch(host, python, have, want.describe(), reason)

    if info.get("implementation") != want.implementation:
        refuse(f"implementation {info.get('implementation')} != {want.implementation}")
    if info.get("version") != want.version:
        refuse(f"Python {info.get('version')} != {want.version} (platform wheels are built "
               f"per Python version; run the controller with Python {info.get('version')} "
               f"or give the host a python{want.version})")
    if info.get("machine") != want.machine:
        refuse(f"architecture {info.get('machine')} != {want.machine}")
    if manifest.min_glibc is not None:
        lib, _, ver = str(info.get("libc") or "").partition(" ")
        if lib != "glibc" or _version_tuple(ver) < _version_tuple(manifest.min_glibc):
            refuse(f"the platform wheels need glibc >= {manifest.min_glibc}")


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:2]) or (0,)


# -- build --------------------------------------------------------------------


def build_wheelhouse(cache_dir: Path, timeout: float = 900.0) -> Wheelhouse:
    """The wheelhouse for the current sources, built only when they changed."""
    deadline = time.monotonic() + timeout
    root = source_root()
    files = source_files(root)
    pins = dependency_pins()
    target = PythonTarget.current()
    key = compute_key(root, files, pins, target)
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / key[:16]
    with _locked(cache_dir / ".lock", deadline):
        cached = _load_cached(final, key)
        if cached is not None:
            log.info("wheelhouse %s: up to date (%d wheels)", final, len(cached.manifest.wheels))
            return cached
        shutil.rmtree(final, ignore_errors=True)
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
        try:
            manifest = _build(root, files, pins, target, key, work, deadline)
            os.rename(work / "out", final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info("wheelhouse %s: built %d wheels in %.1f s", final, len(manifest.wheels),
                 time.monotonic() - started)
        return Wheelhouse(final, manifest)


def load_wheelhouse(path: Path) -> Wheelhouse:
    """A built wheelhouse, every wheel checked against the manifest's sha256."""
    try:
        manifest = Manifest.from_json((path / MANIFEST).read_text())
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise WheelhouseError(f"{path / MANIFEST}: unreadable manifest: {err}") from err
    for wheel in manifest.wheels:
        file = path / "wheels" / wheel.file
        if not file.is_file() or _sha256(file) != wheel.sha256:
            raise WheelhouseError(f"{file}: missing or does not match its sha256 in the manifest")
    return Wheelhouse(path, manifest)


def _load_cached(path: Path, key: str) -> Optional[Wheelhouse]:
    if not (path / MANIFEST).is_file():
        return None
    try:
        cached = load_wheelhouse(path)
    except WheelhouseError as err:
        log.warning("rebuilding: %s", err)
        return None
    return cached if cached.key == key else None


def _build(root: Path, files: Sequence[Path], pins: Sequence[str], target: PythonTarget,
           key: str, work: Path, deadline: float) -> Manifest:
    src, out = work / "src", work / "out"
    for rel in files:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, src / rel)
    (work / "constraints.txt").write_text("\n".join(pins) + "\n")
    command = [sys.executable, "-m", "pip", "wheel", "--no-input", "--disable-pip-version-check",
               "--wheel-dir", str(out / "wheels"), "--constraint", str(work / "constraints.txt"),
               str(src)]
    remaining = deadline - time.monotonic()
    try:
        proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=max(remaining, 1.0), cwd=work)
    except subprocess.TimeoutExpired as err:
        output = err.output if isinstance(err.output, str) else ""
        raise WheelhouseError(f"pip wheel did not finish within {remaining:.0f} s",
                              command, None, output) from err
    if proc.returncode != 0:
        raise WheelhouseError("pip wheel failed", command, proc.returncode, proc.stdout)
    names = sorted(p.name for p in (out / "wheels").glob("*.whl"))
    own = [n for n in names if n.startswith(PACKAGE + "-")]
    if len(own) != 1:
        raise WheelhouseError(f"expected one {PACKAGE} wheel, found {own}", command,
                              proc.returncode, proc.stdout)
    manifest = Manifest(
        PACKAGE, own[0].split("-")[1], key, target, min_glibc(names),
        tuple(WheelFile(n, _sha256(out / "wheels" / n), (out / "wheels" / n).stat().st_size)
              for n in names))
    (out / MANIFEST).write_text(manifest.to_json())
    return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _locked:
    """flock on `path` (threads and processes), polled until `deadline`."""

    def __init__(self, path: Path, deadline: float) -> None:
        self.path = path
        self.deadline = deadline
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        for _ in _poll(self.deadline, 0.2):
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                continue
        os.close(self.fd)
        raise WheelhouseError(f"{self.path}: another build held the lock past the deadline")

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _poll(deadline: float, interval: float) -> Iterator[None]:
    yield
    while time.monotonic() < deadline:
        time.sleep(interval)
        yield
