"""The cfg trees the reference (avocado-framework-plugin-vt) ships,
assembled for the conformance tests and the benchmark.

* `STANDALONE`: every shipped cfg file that parses on its own.
* `guest_os_text()`: guest-os.cfg made from the shipped guest-os/ tree by
  the reference's own bootstrap code (``get_directory_structure``, taken
  from virttest/bootstrap.py without importing it: importing it needs all
  of avocado).
* `shipped_tree()`: base, machines, guest-os, guest-hw and the other shared
  files composed as avocado-vt composes them, plus `only` filters.
* `backend_tree()`: a backend's own tests.cfg over its tests-shared.cfg,
  with the files bootstrap would generate: guest-os.cfg as above, host.cfg
  as ``create_host_os_cfg`` writes it (fixed host values) and a stand-in
  subtests.cfg (the real one lists the tests of a test provider such as
  tp-qemu, which is not shipped).
"""

from __future__ import annotations

import ast
import io
import os
import shutil
import warnings
from typing import Any, Callable, Optional, Sequence


def reference_dir() -> str:
    """The installed virttest package."""
    import virttest
    return os.path.dirname(virttest.__file__)


def shared_cfg_dir() -> str:
    """virttest/shared/cfg of the installed reference."""
    return os.path.join(reference_dir(), "shared", "cfg")


# Shipped cfg files that parse on their own (paths inside virttest/).  The
# backends' tests.cfg and tests-shared.cfg need generated files: see
# `backend_tree`.
STANDALONE = [
    "shared/cfg/base.cfg",
    "shared/cfg/machines.cfg",
    "shared/cfg/guest-hw.cfg",
    "shared/cfg/cdkeys.cfg",
    "shared/cfg/virtio-win.cfg",
    "backends/libvirt/cfg/drivers.cfg",
    "backends/virttools/cfg/drivers.cfg",
    "backends/lvsb/cfg/base.cfg",
    "backends/v2v/cfg/convert_source.cfg",
    "backends/v2v/cfg/convert_destination.cfg",
]

BACKENDS = ["qemu", "libvirt", "libguestfs", "openvswitch", "v2v",
            "virttools", "lvsb"]


def _bootstrap_function(name: str) -> Callable[..., Any]:
    """A function of virttest/bootstrap.py, compiled from its source."""
    path = os.path.join(reference_dir(), "bootstrap.py")
    with open(path, encoding="utf-8") as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = ast.parse(fh.read(), path)
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            with warnings.catch_warnings():     # its invalid escapes
                warnings.simplefilter("ignore")
                code = compile(ast.Module(body=[node], type_ignores=[]), path,
                               "exec")
            namespace: dict[str, Any] = {"os": os}
            exec(code, namespace)
            return namespace[name]  # type: ignore[no-any-return]
    raise LookupError(f"{name} not in {path}")


def guest_os_text() -> str:
    """guest-os.cfg as avocado-vt's bootstrap writes it."""
    build = _bootstrap_function("get_directory_structure")
    out = io.StringIO()
    build(os.path.join(shared_cfg_dir(), "guest-os"), out, "Guest")
    return out.getvalue()


def host_cfg_text(name: str = "Host_ubuntu", version: str = "m22",
                  release: str = "u04", arch: str = "Host_arch_x86_64",
                  vendor: str = "intel", family: Optional[str] = "6",
                  cpu_version: Optional[str] = "85") -> str:
    """host.cfg as bootstrap's ``create_host_os_cfg`` writes it (for an
    Ubuntu 22.04 host on an Intel CPU: "Host_ubuntu", not "RHEL", so that
    ``only RHEL`` selects guests)."""
    lines = ["variants:", "    - @Host:", "        variants:",
             f"            - @{name}:", "                variants:",
             f"                    - @{version}:",
             "                        variants:",
             f"                            - @{release}:",
             "                                variants:",
             f"                                    - @{arch}:"]
    if vendor:
        lines += ["variants:", "    - @HostCpuVendor:", "        variants:",
                  f"            - @{vendor}:"]
    if family:
        lines += ["variants:", "    - @HostCpuFamily:", "        variants:",
                  f"            - @{family}:"]
        if cpu_version:
            lines += ["                variants:",
                      "                    - @HostCpuVersion:",
                      "                        variants:",
                      f"                            - @{cpu_version}:"]
    return "\n".join(lines) + "\n"


# A stand-in for the generated subtests.cfg, in the style of tp-qemu's.
SUBTESTS_STUB = """\
variants subtest:
    - unattended_install:
        type = unattended_install
        start_vm = no
        kill_vm = yes
        variants:
            - cdrom:
                medium = cdrom
            - url:
                medium = url
                only Linux
    - boot: install setup image_copy unattended_install.cdrom
        type = boot
        restart_vm = yes
        kill_vm_on_error = yes
        login_timeout = 240
    - reboot: install setup image_copy unattended_install.cdrom
        type = boot
        reboot_method = shell
        Windows:
            reboot_method = system_reset
    - migrate: install setup image_copy unattended_install.cdrom
        type = migration
        migration_test_command = help
        kill_vm_on_error = yes
        variants:
            - tcp:
                migration_protocol = "tcp"
            - exec:
                migration_protocol = "exec"
                migration_exec_cmd_src = "gzip -c > %s"
        no Win2000
    - multi_host:
        type = multi_host_migration
        vms = "vm1 vm2"
        variants:
            - @default:
            - with_tls:
                migrate_tls = yes
    - guestfs_list_operations:
        type = guestfs_list_operations
    - virsh_pool_create_as:
        type = virsh_pool_create_as
    - convert_libvirt:
        type = v2v_options
    - linux_vm_check_local:
        type = linux_vm_check
    - build:
        type = v2v_build
    - ovs_basic:
        type = ovs_basic
        variants:
            - vlan_ping:
            - @netperf:
    - lvsb_date:
        type = lvsb_date
"""


def top_blocks(path: str) -> list[tuple[Optional[str], list[str], Optional[str]]]:
    """The top-level variants blocks of a shipped file: (name, entry names,
    the default entry (``@``) if any)."""
    import re
    blocks: list[tuple[Optional[str], list[str], Optional[str]]] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            m = re.match(r"variants(?:\s+([\w-]+))?\s*(?:\[.*\])?\s*:", line)
            if m:
                blocks.append((m.group(1), [], None))
                continue
            m = re.match(r"    - (@?)([\w.\-]+):", line)
            if m and blocks:
                var, names, default = blocks[-1]
                names.append(m.group(2))
                if m.group(1) and default is None:
                    blocks[-1] = (var, names, m.group(2))
    return blocks


def only_word(var: Optional[str], name: str) -> str:
    """The filter word selecting an entry of a (named) block."""
    return f"({var}={name})" if var else name


def guest_hw_selection(whole: Sequence[int] = ()) -> list[str]:
    """``only`` lines keeping one entry (the default, else the first) of
    each top-level block of guest-hw.cfg, but the blocks numbered in
    `whole`, kept whole."""
    out = []
    blocks = top_blocks(os.path.join(shared_cfg_dir(), "guest-hw.cfg"))
    for i, (var, names, default) in enumerate(blocks):
        if i not in whole:
            out.append("only " + only_word(var, default or names[0]))
    return out


def _copy_shared(directory: str, skip: Sequence[str] = ()) -> None:
    src = shared_cfg_dir()
    for name in os.listdir(src):
        if name.endswith(".cfg") and name not in skip:
            shutil.copy(os.path.join(src, name), directory)
    with open(os.path.join(directory, "guest-os.cfg"), "w",
              encoding="utf-8") as fh:
        fh.write(guest_os_text())


def _top(directory: str, includes: Sequence[str], filters: Sequence[str]) -> str:
    top = os.path.join(directory, "top.cfg")
    with open(top, "w", encoding="utf-8") as fh:
        fh.write("".join(f"include {p}\n" for p in includes))
        fh.write("".join(f"{f}\n" for f in filters))
    return top


def shipped_tree(tmp: str, filters: Sequence[str],
                 parts: Sequence[str] = ("base.cfg", "machines.cfg",
                                         "guest-os.cfg", "guest-hw.cfg",
                                         "cdkeys.cfg", "virtio-win.cfg")) -> str:
    """The shared files in `tmp` and a top file including `parts` (in the
    order of a backend's tests-shared.cfg) then `filters`; its path."""
    _copy_shared(tmp)
    return _top(tmp, parts, filters)


def backend_tree(tmp: str, backend: str, filters: Sequence[str]) -> str:
    """`backend`'s tests.cfg with the files bootstrap would put beside it,
    then `filters`; the path of the top file."""
    own = os.path.join(reference_dir(), "backends", backend, "cfg")
    own_files = [n for n in os.listdir(own) if n.endswith(".cfg")]
    _copy_shared(tmp, skip=own_files)
    for name in own_files:
        shutil.copy(os.path.join(own, name), tmp)
    with open(os.path.join(tmp, "host.cfg"), "w", encoding="utf-8") as fh:
        fh.write(host_cfg_text())
    with open(os.path.join(tmp, "subtests.cfg"), "w", encoding="utf-8") as fh:
        fh.write(SUBTESTS_STUB)
    return _top(tmp, ["tests.cfg"], filters)
