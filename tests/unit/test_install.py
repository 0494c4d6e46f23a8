"""Client install: wheelhouse keys, manifest, host checks, install decisions (fakes)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from multihost_migration.errors import (
    ClientInstallError, HostPythonMismatch, MigrationTestError, WheelhouseError)
from multihost_migration.remote import CommandResult, RemoteHost, SshTarget
from multihost_migration.server import install, wheelhouse
from multihost_migration.server.wheelhouse import (
    Manifest, PythonTarget, WheelFile, Wheelhouse, check_host_python, compute_key,
    min_glibc, wheel_glibc)

TARGET = PythonTarget("cpython", "3.11", "3.11.7", "x86_64", "linux-x86_64", "glibc 2.36")
CRYPTO = "cryptography-50.0.2-cp311-abi3-manylinux_2_34_x86_64.whl"
CFFI = "cffi-2.1.1-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
OWN = "multihost_migration-0.1.0-py3-none-any.whl"
HOST_OK = {"implementation": "cpython", "version": "3.11", "full_version": "3.11.2",
           "machine": "x86_64", "libc": "glibc 2.36", "executable": "/usr/bin/python3.11",
           "venv": True, "ensurepip": True, "flock": True, "sha256sum": True}


def manifest(**changes: Any) -> Manifest:
    base = Manifest("multihost_migration", "0.1.0", "ab" * 32, TARGET, "2.34",
                    (WheelFile(OWN, "0" * 64, 10), WheelFile(CRYPTO, "1" * 64, 20)))
    return replace(base, **changes)


# -- wheel tags ---------------------------------------------------------------


def test_wheel_glibc_reads_manylinux_tags() -> None:
    assert wheel_glibc(OWN) is None
    assert wheel_glibc(CRYPTO) == (2, 34)
    assert wheel_glibc(CFFI) == (2, 17)    # compressed tag set: the oldest one
    assert wheel_glibc("x-1.0-cp311-cp311-manylinux1_x86_64.whl") == (2, 5)
    assert wheel_glibc("x-1.0-cp311-cp311-musllinux_1_1_x86_64.whl") is None
    with pytest.raises(WheelhouseError, match="not a wheel file name"):
        wheel_glibc("garbage.whl")


def test_min_glibc_is_the_newest_any_wheel_needs() -> None:
    assert min_glibc([OWN, CFFI, CRYPTO]) == "2.34"
    assert min_glibc([OWN]) is None


# -- manifest and keys --------------------------------------------------------


def test_manifest_round_trips_and_refuses_other_formats() -> None:
    m = manifest()
    assert Manifest.from_json(m.to_json()) == m
    data = json.loads(m.to_json())
    data["format"] = 99
    with pytest.raises(ValueError, match="format 99"):
        Manifest.from_json(json.dumps(data))


def fake_checkout(root: Path) -> Path:
    (root / "multihost_migration" / "__pycache__").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'multihost_migration'\n")
    (root / "multihost_migration" / "__init__.py").write_text("__version__ = '0.1.0'\n")
    (root / "multihost_migration" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"x")
    return root


def test_key_follows_sources_pins_and_python(tmp_path: Path) -> None:
    root = fake_checkout(tmp_path)
    files = wheelhouse.source_files(root)
    assert [f.as_posix() for f in files] == ["pyproject.toml", "multihost_migration/__init__.py"]
    key = compute_key(root, files, ["paramiko==5.1.0"], TARGET)
    assert key == compute_key(root, files, ["paramiko==5.1.0"], TARGET)
    assert key != compute_key(root, files, ["paramiko==5.0.0"], TARGET)
    assert key != compute_key(root, files, ["paramiko==5.1.0"], replace(TARGET, version="3.12"))
    (root / "multihost_migration" / "__init__.py").write_text("__version__ = '0.1.1'\n")
    assert key != compute_key(root, files, ["paramiko==5.1.0"], TARGET)


def test_dependency_pins_follow_the_installed_closure() -> None:
    pins = wheelhouse.dependency_pins()
    names = {p.split("==")[0] for p in pins}
    assert "paramiko==5.1.0" in pins and "pyyaml==6.0.3" in pins
    assert {"cryptography", "bcrypt", "pynacl", "cffi"} <= names   # paramiko's, transitively
    assert not names & {"pip", "setuptools", "multihost-migration", "pytest", "tox"}


class BuildCounter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, root: Path, files: Any, pins: Any, target: PythonTarget, key: str,
                 work: Path, deadline: float) -> Manifest:
        self.calls += 1
        (work / "out" / "wheels").mkdir(parents=True)
        (work / "out" / "wheels" / OWN).write_bytes(b"wheel")
        m = manifest(key=key, wheels=(WheelFile(OWN, hashlib.sha256(b"wheel").hexdigest(), 5),))
        (work / "out" / wheelhouse.MANIFEST).write_text(m.to_json())
        return m


def test_build_only_when_the_sources_change(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = fake_checkout(tmp_path / "src")
    build = BuildCounter()
    monkeypatch.setattr(wheelhouse, "source_root", lambda: root)
    monkeypatch.setattr(wheelhouse, "_build", build)
    first = wheelhouse.build_wheelhouse(tmp_path / "cache")
    again = wheelhouse.build_wheelhouse(tmp_path / "cache")
    assert build.calls == 1 and again == first
    assert (first.path / wheelhouse.MANIFEST).is_file() and first.wheel_paths()[0].is_file()
    (root / "multihost_migration" / "new.py").write_text("x = 1\n")
    changed = wheelhouse.build_wheelhouse(tmp_path / "cache")
    assert build.calls == 2 and changed.key != first.key
    first.wheel_paths()[0].write_bytes(b"tampered")      # corrupt cache: rebuilt
    (root / "multihost_migration" / "new.py").unlink()
    assert wheelhouse.build_wheelhouse(tmp_path / "cache").key == first.key
    assert build.calls == 3


def test_load_wheelhouse_refuses_a_wheel_that_does_not_match(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / OWN).write_bytes(b"wheel")
    m = manifest(wheels=(WheelFile(OWN, "0" * 64, 5),))
    (tmp_path / wheelhouse.MANIFEST).write_text(m.to_json())
    with pytest.raises(WheelhouseError, match="does not match its sha256"):
        wheelhouse.load_wheelhouse(tmp_path)


# -- host python --------------------------------------------------------------


def test_host_python_that_fits_passes() -> None:
    check_host_python(manifest(), "h1", "python3", HOST_OK)   # 3.11.2 vs 3.11.7: same tag


@pytest.mark.parametrize("change, words", [
    ({"version": "3.12", "full_version": "3.12.1"}, ["3.12.1", "3.11.7", "Python 3.12 != 3.11"]),
    ({"machine": "aarch64"}, ["architecture aarch64 != x86_64"]),
    ({"implementation": "pypy"}, ["implementation pypy != cpython"]),
    ({"libc": "glibc 2.31"}, ["glibc >= 2.34"]),
    ({"libc": "musl 1.2"}, ["glibc >= 2.34"]),
])
def test_host_python_that_does_not_fit_is_refused(change: dict[str, str],
                                                  words: list[str]) -> None:
    with pytest.raises(HostPythonMismatch) as info:
        check_host_python(manifest(), "h2", "/opt/py/bin/python3", {**HOST_OK, **change})
    text = str(info.value)
    assert "h2" in text and "/opt/py/bin/python3" in text
    for word in words:
        assert word in text
    assert isinstance(info.value, ClientInstallError)


def test_pure_wheelhouse_does_not_care_about_libc() -> None:
    check_host_python(manifest(min_glibc=None), "h1", "python3", {**HOST_OK, "libc": ""})


# -- the remote check snippet, run for real with this python -----------------


def run_check(marker: Path, key: str, version: str, venv: Path) -> tuple[bool, str]:
    proc = subprocess.run([sys.executable, "-c", install.CHECK, str(marker), key, version,
                           str(venv)], capture_output=True, text=True, timeout=30)
    ready, reason = install.parse_check(proc.stdout, proc.stderr)
    assert (proc.returncode == 0) == ready
    return ready, reason


def test_check_snippet_decides_from_marker_import_location_and_version(tmp_path: Path) -> None:
    checkout = Path(wheelhouse.__file__).resolve().parents[2]   # imports come from here
    marker = tmp_path / "marker.json"
    assert run_check(marker, "k" * 64, "0.1.0", checkout) == (
        False, f"no valid marker: [Errno 2] No such file or directory: '{marker}'")
    marker.write_text(json.dumps({"key": "a" * 64}))
    ready, reason = run_check(marker, "b" * 64, "0.1.0", checkout)
    assert not ready and reason == f"marker names build aaaaaaaa, want bbbbbbbb"
    ready, reason = run_check(marker, "a" * 64, "0.1.0", tmp_path)
    assert not ready and "outside" in reason and str(checkout) in reason
    ready, reason = run_check(marker, "a" * 64, "9.9", checkout)
    assert not ready and "version 0.1.0 installed, want 9.9" in reason
    assert run_check(marker, "a" * 64, "0.1.0", checkout) == (True, "version 0.1.0, build aaaaaaaa")


def test_parse_check_keeps_the_evidence_of_a_broken_python() -> None:
    ready, reason = install.parse_check("", "error while loading shared libraries: libpython")
    assert not ready and "libpython" in reason


def test_install_script_is_valid_sh_and_names_its_steps() -> None:
    subprocess.run(["sh", "-n", "-c", install.INSTALL], check=True, timeout=10)
    assert install.last_step("x\nMHM-STEP venv\nMHM-STEP pip\nERROR: no match\n") == "pip"
    assert install.last_step("") == "install script start"


# -- ensure_client with a fake host -----------------------------------------


class FakeSftp:
    def __init__(self, host: "FakeHost") -> None:
        self.host = host

    def __enter__(self) -> "FakeSftp":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def get_channel(self) -> None:
        return None

    def put(self, local: str, remote: str) -> None:
        self.host.uploaded.append(remote)

    def open(self, path: str, mode: str) -> Any:
        self.host.uploaded.append(path)
        return open("/dev/null", mode)


class FakeClient:
    def __init__(self, host: "FakeHost") -> None:
        self.host = host

    def open_sftp(self) -> FakeSftp:
        return FakeSftp(self.host)


class FakeHost(RemoteHost):
    """Answers commands by their first matching rule: (substring, status, stdout)."""

    def __init__(self, rules: list[tuple[str, int, str]]) -> None:
        super().__init__(SshTarget("fake-h1"))
        self.rules = rules
        self.commands: list[str] = []
        self.uploaded: list[str] = []

    @property
    def client(self) -> Any:
        return FakeClient(self)

    def run(self, command: str, timeout: float = 60.0, check: bool = True,
            on_line: Optional[Callable[[str], None]] = None, get_pty: bool = False,
            cancel: Optional[threading.Event] = None) -> CommandResult:
        assert timeout > 0
        self.commands.append(command)
        for needle, status, out in self.rules:
            if needle in command:
                if check and status:
                    raise AssertionError(f"unexpected failure of {command}")
                return CommandResult(command, status, out, "", 0.01)
        raise AssertionError(f"no rule for {command}")


def fake_wheelhouse(tmp_path: Path) -> Wheelhouse:
    return Wheelhouse(tmp_path, manifest(key="c0ffee00" + "0" * 56))


CHECK_NO = ("if [ -x", 0, '{"ready": false, "reason": "no venv at x"}\n')
PROBE_OK = ("import json, platform", 0, json.dumps(HOST_OK) + "\n")
MKTEMP = ("mktemp -d", 0, "/var/lib/mhm-client/.upload-abc\n")
RM = ("rm -rf /var/lib/mhm-client/.upload-abc", 0, "")


def test_fast_path_is_one_command_and_no_upload(tmp_path: Path) -> None:
    host = FakeHost([("if [ -x", 0, '{"ready": true, "reason": "version 0.1.0"}\n')])
    outcome = install.install_client(host, fake_wheelhouse(tmp_path))
    assert outcome.python == "/var/lib/mhm-client/venv-0.1.0-c0ffee00/bin/python"
    assert outcome.action == "present" and len(host.commands) == 1 and not host.uploaded


def test_install_uploads_runs_the_script_and_removes_the_upload(tmp_path: Path) -> None:
    host = FakeHost([("LOCK_TIMEOUT=", 0, "MHM-STEP lock\nMHM-STEP pip\nMHM-INSTALLED\n"),
                     CHECK_NO, PROBE_OK, MKTEMP, RM])
    python = install.ensure_client(host, fake_wheelhouse(tmp_path), python="/usr/bin/python3")
    assert python == "/var/lib/mhm-client/venv-0.1.0-c0ffee00/bin/python"
    assert host.uploaded == [f"/var/lib/mhm-client/.upload-abc/{n}"
                             for n in (OWN, CRYPTO, "SHA256SUMS", "marker.json")]
    script = host.commands[-2]
    assert "PYTHON=/usr/bin/python3" in script and "VERSION=0.1.0" in script
    assert host.commands[-1] == "rm -rf /var/lib/mhm-client/.upload-abc"


def test_wrong_host_python_is_refused_before_any_upload(tmp_path: Path) -> None:
    other = {**HOST_OK, "version": "3.12", "full_version": "3.12.1"}
    host = FakeHost([CHECK_NO, ("import json, platform", 0, json.dumps(other))])
    with pytest.raises(HostPythonMismatch, match="fake-h1 is cpython 3.12.1"):
        install.ensure_client(host, fake_wheelhouse(tmp_path))
    assert len(host.commands) == 2 and not host.uploaded


def test_missing_ensurepip_names_the_package(tmp_path: Path) -> None:
    host = FakeHost([CHECK_NO, ("import json, platform", 0,
                                json.dumps({**HOST_OK, "ensurepip": False}))])
    with pytest.raises(ClientInstallError, match="no ensurepip module.*python3.11-venv"):
        install.ensure_client(host, fake_wheelhouse(tmp_path))
    assert not host.uploaded


def test_failed_step_is_named_with_output_and_upload_removed(tmp_path: Path) -> None:
    host = FakeHost([("LOCK_TIMEOUT=", 1, "MHM-STEP verify\nMHM-STEP venv\nMHM-STEP pip\n"
                                        "ERROR: No matching distribution found for invoke\n"),
                     CHECK_NO, PROBE_OK, MKTEMP, RM])
    with pytest.raises(ClientInstallError) as info:
        install.ensure_client(host, fake_wheelhouse(tmp_path))
    assert info.value.step == "pip" and "No matching distribution" in str(info.value)
    assert host.commands[-1] == "rm -rf /var/lib/mhm-client/.upload-abc"


def test_concurrent_install_that_finished_first_counts_as_present(tmp_path: Path) -> None:
    host = FakeHost([("LOCK_TIMEOUT=", 0, "MHM-STEP lock\nMHM-STEP recheck\nMHM-PRESENT\n"),
                     CHECK_NO, PROBE_OK, MKTEMP, RM])
    assert install.install_client(host, fake_wheelhouse(tmp_path)).action == "present"


def test_python_that_does_not_run_is_reported(tmp_path: Path) -> None:
    host = FakeHost([CHECK_NO, ("import json, platform", 127, "python9: not found\n")])
    with pytest.raises(ClientInstallError, match="python9: not found"):
        install.ensure_client(host, fake_wheelhouse(tmp_path), python="python9")


# -- error messages -----------------------------------------------------------


def test_error_messages_carry_their_evidence() -> None:
    err = WheelhouseError("pip wheel failed", ["pip", "wheel", "."], 1, "no such package")
    assert str(err) == ("wheelhouse: pip wheel failed\ncommand (status 1): pip wheel .\n"
                        "output:\nno such package")
    err2 = ClientInstallError("h1", "pip", "exit status 1", "line1\nline2")
    assert str(err2) == "client install on h1 failed at pip: exit status 1\noutput:\nline1\nline2"
    err3 = HostPythonMismatch("h2", "python3", "cpython 3.12.1", "cpython 3.11.7", "why")
    assert str(err3) == ("client install on h2 failed at python check: python3 on h2 is "
                         "cpython 3.12.1 but the wheelhouse was built for cpython 3.11.7: why")
    assert all(isinstance(e, MigrationTestError) for e in (err, err2, err3))
