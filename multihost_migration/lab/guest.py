"""The tiny guest builder (JeOS built locally, no downloads).

`build_guest(output_dir)` writes into `output_dir`:

    mhm-guest-vmlinuz     the newest distro kernel /boot/vmlinuz-*, as its
                          PVH-bootable ELF payload when it has one (boots
                          about twice as fast under TCG), else a plain copy
    mhm-guest-initrd.img  busybox initramfs (reproducible gzip'd newc cpio)
    mhm-guest.qcow2       64 MiB blank qcow2, seen raw as /dev/vda in the guest
    mhm-guest.json        the manifest, written last

The build is deterministic, and skipped when the sha256 over its inputs
(kernel, busybox, kernel modules used, helper sources, guest templates and
BUILDER_VERSION) matches the manifest and the files exist.  Files are built
in a temporary directory inside `output_dir` and renamed into place; the old
manifest is removed first and the new one renamed in last, so a crash never
leaves something that `GuestImage.load` or the rebuild check accepts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping

from multihost_migration.errors import LabError
from multihost_migration.lab import guest_initramfs
from multihost_migration.lab.guest_kernel import guest_kernel
from multihost_migration.lab.guest_sources import (
    BuildSources, GuestInputs, build_lock, compile_helpers, create_disk,
    find_inputs, hash_inputs, password_hash, read_module, applet_paths,
)

log = logging.getLogger(__name__)

BUILDER_VERSION = "3"
KERNEL_NAME = "mhm-guest-vmlinuz"
INITRD_NAME = "mhm-guest-initrd.img"
DISK_NAME = "mhm-guest.qcow2"
MANIFEST_NAME = "mhm-guest.json"
DISK_SIZE_MIB = 64
USERNAME = "root"
PASSWORD = "mhm"
PASSWORD_SALT = "mhmguestsalt0001"
KERNEL_CMDLINE = "console=ttyS0,115200 quiet loglevel=1 panic=-1"
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class GuestImage:
    """A built tiny guest: what a VM needs to boot it and log in."""

    kernel: Path
    initrd: Path
    disk: Path
    kernel_cmdline: str = KERNEL_CMDLINE
    username: str = USERNAME
    password: str = PASSWORD
    # ash may follow the prompt with an unanswered cursor query, ESC [6n.
    shell_prompt_regex: str = r"mhm-guest# (?:\x1b\[6n)?$"
    login_prompt_regex: str = r"login: $"
    password_prompt_regex: str = r"[Pp]assword: $"
    helpers: Dict[str, str] = field(default_factory=dict)
    input_sha256: str = ""

    def to_dict(self) -> Dict[str, object]:
        """JSON-ready fields with absolute file paths (for inventories, logs)."""
        data: Dict[str, object] = dataclasses.asdict(self)
        for name in ("kernel", "initrd", "disk"):
            data[name] = str(data[name])
        return data

    def to_manifest(self) -> Dict[str, Any]:
        """JSON-ready fields; file paths relative to the manifest's directory."""
        data = dataclasses.asdict(self)
        for name in ("kernel", "initrd", "disk"):
            data[name] = Path(data[name]).name
        data["format"] = MANIFEST_FORMAT
        data["builder_version"] = BUILDER_VERSION
        return data

    @classmethod
    def from_manifest(cls, output_dir: Path, data: Mapping[str, Any]) -> "GuestImage":
        if data.get("format") != MANIFEST_FORMAT:
            raise LabError(f"guest manifest in {output_dir} has format "
                           f"{data.get('format')!r}, expected {MANIFEST_FORMAT}")
        try:
            kwargs = {f.name: data[f.name] for f in dataclasses.fields(cls)}
        except KeyError as err:
            raise LabError(f"guest manifest in {output_dir} lacks field {err}") from err
        for name in ("kernel", "initrd", "disk"):
            kwargs[name] = Path(output_dir) / str(kwargs[name])
        kwargs["helpers"] = {str(k): str(v) for k, v in dict(kwargs["helpers"]).items()}
        return cls(**kwargs)

    @classmethod
    def load(cls, output_dir: Path) -> "GuestImage":
        """Read the manifest written by build_guest; LabError if absent or bad."""
        path = Path(output_dir) / MANIFEST_NAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as err:
            raise LabError(f"no tiny guest in {output_dir}: {path} missing "
                           f"(run build_guest)") from err
        except (OSError, ValueError) as err:
            raise LabError(f"unreadable guest manifest {path}: {err}") from err
        if not isinstance(data, dict):
            raise LabError(f"guest manifest {path} is not a JSON object")
        return cls.from_manifest(Path(output_dir), data)


def is_current(output_dir: Path, input_sha256: str) -> bool:
    """True if output_dir holds a complete guest built from these inputs."""
    try:
        image = GuestImage.load(output_dir)
    except LabError:
        return False
    if image.input_sha256 != input_sha256:
        return False
    return all(p.is_file() for p in (image.kernel, image.initrd, image.disk))


def build_guest(output_dir: Path, force: bool = False, *,
                sources: BuildSources | None = None,
                timeout: float = 300.0) -> GuestImage:
    """Build the tiny guest into output_dir, or return the current one at once.

    `sources` overrides where the kernel, modules, busybox and tools are found
    (tests); `timeout` bounds the wait for a concurrent build's lock and each
    tool run.  Raises LabError naming what is missing or what failed.
    """
    output_dir = Path(output_dir)
    sources = sources or BuildSources()
    inputs = find_inputs(sources)
    digest = hash_inputs(inputs, version=BUILDER_VERSION, extra=_template_text())
    output_dir.mkdir(parents=True, exist_ok=True)
    with build_lock(output_dir / ".mhm-guest.lock", timeout):
        if not force and is_current(output_dir, digest):
            log.debug("tiny guest in %s is current (%s)", output_dir, digest[:12])
            return GuestImage.load(output_dir)
        _remove_stale_builds(output_dir)
        log.info("building tiny guest in %s from kernel %s", output_dir, inputs.kernel)
        return _build(output_dir, inputs, digest, sources, timeout)


def _template_text() -> str:
    parts = [KERNEL_CMDLINE, USERNAME, PASSWORD, PASSWORD_SALT, str(DISK_SIZE_MIB)]
    parts += [f"{k}\n{v}" for k, v in sorted(guest_initramfs.TEMPLATES.items())]
    return "\n".join(parts)


def _remove_stale_builds(output_dir: Path) -> None:
    for stale in output_dir.glob(".mhm-guest-build-*"):
        log.info("removing stale partial guest build %s", stale)
        shutil.rmtree(stale, ignore_errors=True)


def _build(output_dir: Path, inputs: GuestInputs, digest: str,
           sources: BuildSources, timeout: float) -> GuestImage:
    work = Path(tempfile.mkdtemp(prefix=".mhm-guest-build-", dir=output_dir))
    try:
        helpers = compile_helpers(inputs.helper_sources, work / "helpers",
                                  sources.gcc, timeout)
        modules = {path.name.split(".ko")[0] + ".ko": read_module(path)
                   for path in inputs.modules}
        tree = guest_initramfs.guest_tree(
            busybox=inputs.busybox.read_bytes(),
            applet_paths=applet_paths(inputs.busybox, timeout),
            password_hash=password_hash(inputs.busybox, PASSWORD, PASSWORD_SALT, timeout),
            modules=modules, helpers=helpers)
        initrd = guest_initramfs.gzip_reproducible(guest_initramfs.write_cpio(tree))
        (work / INITRD_NAME).write_bytes(initrd)
        kernel, kernel_format = guest_kernel(inputs.kernel.read_bytes())
        (work / KERNEL_NAME).write_bytes(kernel)
        create_disk(sources.qemu_img, work / DISK_NAME, DISK_SIZE_MIB, timeout)
        image = GuestImage(
            kernel=output_dir / KERNEL_NAME, initrd=output_dir / INITRD_NAME,
            disk=output_dir / DISK_NAME,
            helpers={name: f"/usr/bin/{name}" for name in sorted(helpers)},
            input_sha256=digest)
        manifest = image.to_manifest()
        manifest["kernel_version"] = inputs.kernel_version
        manifest["kernel_format"] = kernel_format
        manifest["kernel_source"] = str(inputs.kernel)
        manifest["modules"] = list(modules)
        manifest["initrd_sha256"] = hashlib.sha256(initrd).hexdigest()
        (work / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _install(work, output_dir)
        log.info("tiny guest built in %s (initrd %d KiB, input %s)",
                 output_dir, len(initrd) // 1024, digest[:12])
        return image
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _install(work: Path, output_dir: Path) -> None:
    """Rename the built files into place; the manifest goes last."""
    (output_dir / MANIFEST_NAME).unlink(missing_ok=True)
    names: List[str] = [KERNEL_NAME, INITRD_NAME, DISK_NAME, MANIFEST_NAME]
    for name in names:
        os.replace(work / name, output_dir / name)
    fd = os.open(output_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
