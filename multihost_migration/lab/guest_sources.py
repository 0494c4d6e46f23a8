"""Inputs of the tiny guest build and the tools that turn them into files.

Finds the distro kernel and its virtio modules, the static busybox and the
helper sources; hashes them; compiles the helpers; creates the blank disk.
Every external tool runs with a timeout and fails with a LabError that
carries the command and its output.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import lzma
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Sequence, Tuple

from multihost_migration.errors import LabError, tail

log = logging.getLogger(__name__)

HELPER_SRC_DIR = Path(__file__).resolve().parent / "guest_src"
#: Modules the guest loads, by name; their dependencies come from modules.dep.
GUEST_MODULES = ("virtio_pci", "virtio_blk")
#: The NIC drivers (the guest network): loaded when the kernel has them as
#: modules; a kernel with them built in (or without them) needs none.
NET_MODULES = ("virtio_net", "e1000e")


@dataclass(frozen=True)
class BuildSources:
    """Where the build looks for its inputs and tools."""

    boot_dir: Path = Path("/boot")
    modules_root: Path = Path("/lib/modules")
    busybox: Path = Path("/bin/busybox")
    helper_src_dir: Path = HELPER_SRC_DIR
    gcc: str = "gcc"
    qemu_img: str = "qemu-img"


@dataclass(frozen=True)
class GuestInputs:
    """The concrete files one build reads; their contents decide rebuilds."""

    kernel: Path
    kernel_version: str
    modules: Tuple[Path, ...]          # in load order
    modules_dir: Path
    busybox: Path
    helper_sources: Tuple[Path, ...]   # sorted by name


def _version_key(version: str) -> Tuple[Tuple[int, str], ...]:
    return tuple((int(p), "") if p.isdigit() else (-1, p)
                 for p in re.split(r"(\d+)", version) if p)


def find_kernel(boot_dir: Path) -> Tuple[Path, str]:
    """The newest /boot/vmlinuz-<version> and its version string."""
    kernels = [p for p in boot_dir.glob("vmlinuz-*") if p.is_file()]
    if not kernels:
        raise LabError(f"no guest kernel: nothing matches {boot_dir}/vmlinuz-* "
                       f"(install the Debian package linux-image-amd64)")
    newest = max(kernels, key=lambda p: _version_key(p.name[len("vmlinuz-"):]))
    return newest, newest.name[len("vmlinuz-"):]


def parse_modules_dep(text: str) -> Dict[str, List[str]]:
    """modules.dep as {relative module path: [dependency paths]}."""
    deps: Dict[str, List[str]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        module, _, rest = line.partition(":")
        deps[module.strip()] = rest.split()
    return deps


def module_name(path: str) -> str:
    """'kernel/drivers/virtio/virtio_pci.ko.xz' -> 'virtio_pci'."""
    return Path(path).name.split(".ko")[0].replace("-", "_")


def resolve_modules(deps: Mapping[str, List[str]], wanted: Sequence[str]) -> List[str]:
    """Module paths for `wanted` names plus dependencies, dependencies first."""
    by_name = {module_name(path): path for path in deps}
    order: List[str] = []

    def visit(path: str, chain: Tuple[str, ...]) -> None:
        if path in order:
            return
        if path in chain:
            raise LabError(f"module dependency cycle: {' -> '.join(chain + (path,))}")
        for dep in deps.get(path, []):
            visit(dep, chain + (path,))
        order.append(path)

    for name in wanted:
        if name not in by_name:
            raise LabError(f"kernel module {name} not found in modules.dep "
                           f"(is it built in or missing?)")
        visit(by_name[name], ())
    return order


def find_inputs(sources: BuildSources) -> GuestInputs:
    kernel, version = find_kernel(sources.boot_dir)
    modules_dir = sources.modules_root / version
    dep_file = modules_dir / "modules.dep"
    try:
        deps = parse_modules_dep(dep_file.read_text())
    except OSError as err:
        raise LabError(f"cannot read {dep_file} for guest kernel {kernel} "
                       f"(install the matching linux-image package): {err}") from err
    present = {module_name(path) for path in deps}
    wanted = GUEST_MODULES + tuple(m for m in NET_MODULES if m in present)
    modules = tuple(modules_dir / rel for rel in resolve_modules(deps, wanted))
    if not sources.busybox.is_file():
        raise LabError(f"no static busybox at {sources.busybox} "
                       f"(install the Debian package busybox-static)")
    helpers = tuple(sorted(sources.helper_src_dir.glob("*.c")))
    if not helpers:
        raise LabError(f"no guest helper sources in {sources.helper_src_dir}")
    return GuestInputs(kernel, version, modules, modules_dir, sources.busybox, helpers)


def hash_inputs(inputs: GuestInputs, version: str, extra: str = "") -> str:
    """sha256 over every input's name and contents, the version and `extra`."""
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    add("builder-version", version.encode())
    add("extra", extra.encode())
    add("kernel", inputs.kernel.read_bytes())
    add("busybox", inputs.busybox.read_bytes())
    for module in inputs.modules:
        add("module:" + str(module.relative_to(inputs.modules_dir)), module.read_bytes())
    for source in inputs.helper_sources:
        add("helper:" + source.name, source.read_bytes())
    return digest.hexdigest()


def read_module(path: Path) -> bytes:
    """A module's contents, decompressed if it is .ko.xz."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        try:
            return lzma.decompress(data)
        except lzma.LZMAError as err:
            raise LabError(f"cannot decompress kernel module {path}: {err}") from err
    if path.name.endswith((".zst", ".gz")):
        raise LabError(f"unsupported kernel module compression: {path}")
    return data


def run_tool(command: Sequence[str], timeout: float, cwd: Path | None = None) -> str:
    """Run a build tool; its stdout, or LabError with the command and output."""
    try:
        proc = subprocess.run(list(command), cwd=cwd, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as err:
        raise LabError(f"guest build tool not found: {command[0]}") from err
    except subprocess.TimeoutExpired as err:
        raise LabError(f"guest build step timed out after {timeout:.0f} s: "
                       f"{' '.join(command)}") from err
    if proc.returncode != 0:
        raise LabError(f"guest build step failed (exit {proc.returncode}): "
                       f"{' '.join(command)}\n{tail(proc.stdout + proc.stderr)}")
    return proc.stdout


def applet_paths(busybox: Path, timeout: float) -> List[str]:
    return sorted(run_tool([str(busybox), "--list-full"], timeout).split())


def password_hash(busybox: Path, password: str, salt: str, timeout: float) -> str:
    """sha512-crypt with a fixed salt, made by the same busybox that checks it."""
    out = run_tool([str(busybox), "mkpasswd", "-m", "sha512", password, salt], timeout)
    value = out.strip()
    if not value.startswith("$6$"):
        raise LabError(f"busybox mkpasswd gave no sha512 hash: {value!r}")
    return value


def compile_helpers(sources: Sequence[Path], out_dir: Path, gcc: str,
                    timeout: float) -> Dict[str, bytes]:
    """Compile each helper statically (in parallel); {name: binary}.

    Each source is copied into out_dir and compiled there under its base
    name, so no build path ends up in the binaries.
    """
    out_dir.mkdir(parents=True)
    deadline = time.monotonic() + timeout
    procs: List[Tuple[str, List[str], "subprocess.Popen[str]"]] = []
    try:
        for src in sources:
            name = src.stem
            (out_dir / src.name).write_bytes(src.read_bytes())
            cmd = [gcc, "-static", "-O2", "-Wall", "-s", "-o", name, src.name]
            try:
                proc = subprocess.Popen(cmd, cwd=out_dir, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
            except FileNotFoundError as err:
                raise LabError(f"guest build tool not found: {gcc} "
                               f"(install the Debian packages gcc libc6-dev)") from err
            procs.append((name, cmd, proc))
        binaries: Dict[str, bytes] = {}
        for name, cmd, proc in procs:
            try:
                output, _ = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as err:
                raise LabError(f"compiling guest helper timed out: {' '.join(cmd)}") from err
            if proc.returncode != 0:
                raise LabError(f"compiling guest helper {name} failed "
                               f"(exit {proc.returncode}): {' '.join(cmd)}\n{tail(output)}")
            binaries[name] = (out_dir / name).read_bytes()
        return binaries
    finally:
        for _, _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def create_disk(qemu_img: str, path: Path, size_mib: int, timeout: float) -> None:
    run_tool([qemu_img, "create", "-q", "-f", "qcow2", str(path), f"{size_mib}M"], timeout)


@contextlib.contextmanager
def build_lock(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive flock on `path`, waiting at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with open(path, "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise LabError(f"cannot lock {path}: {err}") from err
                if time.monotonic() >= deadline:
                    raise LabError(f"another guest build holds {path} "
                                   f"for more than {timeout:.0f} s") from err
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
