"""Client install on a real lab host: wheelhouse over SFTP, venv, no checkout.

The lab is brought up if needed and left up (other tests share it); every
install goes to a unique base dir in the host's private /tmp, removed at the end.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from multihost_migration.errors import HostPythonMismatch
from multihost_migration.lab import lab
from multihost_migration.lab.config import LabConfig
from multihost_migration.lab.inventory import Inventory
from multihost_migration.remote import RemoteHost
from multihost_migration.server.install import InstallOutcome, install_client, venv_dir
from multihost_migration.server.wheelhouse import Wheelhouse, build_wheelhouse

IMPORTS = ("import sys, multihost_migration, paramiko, qemu.qmp, aexpect, yaml; "
           "print('\\n'.join(m.__file__ for m in "
           "(multihost_migration, paramiko, qemu.qmp, aexpect, yaml)))")


@pytest.fixture(scope="module")
def shared_lab() -> Inventory:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces); run them as root")
    return lab.up(LabConfig())   # idempotent; not taken down: the lab is shared


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Wheelhouse, float, float]:
    cache = tmp_path_factory.mktemp("wheelhouse")
    start = time.monotonic()
    first = build_wheelhouse(cache)
    cold = time.monotonic() - start
    start = time.monotonic()
    again = build_wheelhouse(cache)
    warm = time.monotonic() - start
    assert again == first
    return first, cold, warm


@pytest.fixture
def h1(shared_lab: Inventory) -> Iterator[RemoteHost]:
    with RemoteHost(lab.ssh_target(shared_lab, "h1"), lab.ctl_socket_factory(shared_lab)) as r:
        yield r


@pytest.fixture
def base_dir(h1: RemoteHost) -> Iterator[str]:
    path = f"/tmp/mhm-install-test-{uuid.uuid4().hex[:12]}"
    yield path
    h1.run(f"rm -rf {shlex.quote(path)}", timeout=60)


def on_h1_without_checkout(inv: Inventory, script: str) -> str:
    """Run `script` on h1 in a new mount namespace with a tmpfs over /work."""
    argv = lab.exec_argv(inv, "h1", ["env", "-u", "PYTHONPATH", "unshare", "--mount", "sh",
                                     "-c", f"mount -t tmpfs none /work && {script}"])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{argv}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_wheelhouse_has_the_suite_and_its_platform_wheels(
        built: tuple[Wheelhouse, float, float]) -> None:
    wheelhouse, cold, warm = built
    names = [w.file for w in wheelhouse.manifest.wheels]
    for prefix in ("multihost_migration-0.1.0-", "paramiko-5.1.0-", "cryptography-",
                   "bcrypt-", "pynacl-", "cffi-", "pyyaml-6.0.3-", "qemu_qmp-0.0.6-",
                   "aexpect-1.8.0-"):
        assert any(n.startswith(prefix) for n in names), (prefix, names)
    assert all(p.is_file() for p in wheelhouse.wheel_paths())
    assert warm < 2.0, f"cached wheelhouse took {warm:.1f} s (cold build {cold:.1f} s)"
    print(f"wheelhouse: cold {cold:.1f} s, warm {warm:.2f} s, {len(names)} wheels")


def test_install_on_a_host_that_cannot_see_the_checkout(
        shared_lab: Inventory, h1: RemoteHost, base_dir: str,
        built: tuple[Wheelhouse, float, float]) -> None:
    wheelhouse = built[0]
    first = install_client(h1, wheelhouse, base_dir=base_dir)
    venv = venv_dir(wheelhouse, base_dir)
    assert first.action == "installed" and first.python == f"{venv}/bin/python"
    files = on_h1_without_checkout(
        shared_lab, f"test -z \"$(ls -A /work)\" && {first.python} -c {shlex.quote(IMPORTS)}")
    site = f"{venv}/lib/python{wheelhouse.manifest.python.version}/site-packages/"
    assert [f.startswith(site) for f in files.split()] == [True] * 5, files
    usage = on_h1_without_checkout(shared_lab, f"{first.python} -m multihost_migration.client "
                                               "--help")
    assert "--params" in usage and "--resultsdir" in usage
    leaks = h1.run(f"grep -rl /work {site}*.pth {site}*.dist-info/direct_url.json "
                   "2>/dev/null || true", timeout=30).stdout
    assert leaks == "", f"the venv refers to the checkout: {leaks}"
    assert h1.run(f"ls -A {base_dir}", timeout=30).stdout.split() == [
        ".install.lock", Path(venv).name]       # the upload directory is gone
    second = install_client(h1, wheelhouse, base_dir=base_dir)
    assert second.action == "present" and second.python == first.python
    assert second.seconds < 1.0, f"fast path took {second.seconds:.2f} s"
    print(f"install {first.seconds:.1f} s, fast path {second.seconds:.2f} s")


def test_concurrent_installs_on_one_host_do_not_collide(
        shared_lab: Inventory, base_dir: str, built: tuple[Wheelhouse, float, float]) -> None:
    outcomes: list[InstallOutcome] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with RemoteHost(lab.ssh_target(shared_lab, "h1"),
                            lab.ctl_socket_factory(shared_lab)) as remote:
                outcomes.append(install_client(remote, built[0], base_dir=base_dir,
                                               timeout=300))
        except BaseException as err:  # noqa: B036 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(330)
    assert not errors, errors
    assert sorted(o.action for o in outcomes) == ["installed", "present"]
    assert outcomes[0].python == outcomes[1].python
    on_h1_without_checkout(shared_lab, f"{outcomes[0].python} -c {shlex.quote(IMPORTS)}")


def test_host_python_of_another_version_is_refused_before_upload(
        h1: RemoteHost, base_dir: str, built: tuple[Wheelhouse, float, float]) -> None:
    want = built[0].manifest.python.version
    probe = ("for p in /root/.pyenv/versions/*/bin/python3 /usr/bin/python3.[0-9]* "
             "/usr/local/bin/python3.[0-9]*; do case $p in *-config) continue;; esac; "
             "[ -x \"$p\" ] && v=$(\"$p\" -c 'import sys; print(\"%d.%d\" % "
             "sys.version_info[:2])' 2>/dev/null) && echo \"$p $v\"; done; true")
    found = [line.split() for line in h1.run(probe, timeout=60).stdout.splitlines()]
    others = [path for path, version in found if version.startswith("3.") and version != want]
    if not others:
        pytest.fail(f"h1 has no Python other than {want}: cannot test the refusal here")
    with pytest.raises(HostPythonMismatch) as info:
        install_client(h1, built[0], base_dir=base_dir, python=others[0])
    assert "198.18.0.11" in str(info.value) and want in str(info.value)
    assert others[0] in str(info.value)
    assert h1.run(f"test -e {base_dir}", timeout=30, check=False).exit_status == 1
