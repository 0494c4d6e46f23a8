"""TLS credentials: generation, reuse, races, QEMU options (no QEMU)."""

from __future__ import annotations

import ipaddress
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from multihost_migration.errors import ConfigError, VMLaunchError
from multihost_migration.qemu.cmdline import RunPaths, build_command
from multihost_migration.qemu.config import VMConfig
from multihost_migration.qemu.tls import MANIFEST, TLSConfig, make_tls_credentials
from multihost_migration.qemu.vm import VM


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_x509_chain_and_names(tmp_path: Path) -> None:
    tls = make_tls_credentials(tmp_path / "tls", "x509", ["host1", "198.18.0.2"])
    assert tls.kind == "x509" and tls.dir == tmp_path / "tls" and not tls.missing_files()
    ca = _cert(tls.dir / "ca-cert.pem")
    for role in ("server", "client"):
        cert = _cert(tls.dir / f"{role}-cert.pem")
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)  # raises if the signature is wrong
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["host1"]
        assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("198.18.0.2")]
    assert (tls.dir / "server-key.pem").stat().st_mode & 0o777 == 0o600


def test_idempotent_and_refuses_other_contents(tmp_path: Path) -> None:
    first = make_tls_credentials(tmp_path / "tls", "x509", ["a", "b"])
    before = (first.dir / "ca-cert.pem").read_bytes()
    again = make_tls_credentials(tmp_path / "tls", "x509", ["b"])  # subset: reuse
    assert again == first and (first.dir / "ca-cert.pem").read_bytes() == before
    with pytest.raises(ConfigError, match="holds x509"):
        make_tls_credentials(tmp_path / "tls", "psk")
    with pytest.raises(ConfigError, match="not x509"):
        make_tls_credentials(tmp_path / "tls", "x509", ["c"])
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file").write_text("x")
    with pytest.raises(ConfigError, match="without"):
        make_tls_credentials(tmp_path / "junk", "psk")


def test_concurrent_callers_agree(tmp_path: Path) -> None:
    results: list[bytes] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            tls = make_tls_credentials(tmp_path / "shared" / "tls", "psk")
            results.append((tls.dir / "keys.psk").read_bytes())
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and len(results) == 6 and len(set(results)) == 1
    assert [p.name for p in (tmp_path / "shared").iterdir()] == ["tls"]  # no temp dirs left
    user, key = results[0].decode().strip().split(":")
    assert user == "qemu" and len(key) == 64 and int(key, 16) >= 0


def test_from_params_and_command_line(tmp_path: Path) -> None:
    assert TLSConfig.from_params("vm1", {}) is None
    assert TLSConfig.from_params("vm1", {"migration_tls": "no"}) is None
    with pytest.raises(ConfigError, match="migration_tls_dir"):
        TLSConfig.from_params("vm1", {"migration_tls": "x509"})
    with pytest.raises(ConfigError, match="expected one of"):
        TLSConfig.from_params("vm1", {"migration_tls": "ssl", "migration_tls_dir": "/x"})
    config = VMConfig.from_params("vm1", {"migration_tls": "psk",
                                          "migration_tls_dir": "/d,1",
                                          "migration_tls_hostname": "host2"})
    assert config.tls is not None and config.tls.outgoing_parameters() == {
        "tls-creds": "mhm-tls-client", "tls-hostname": "host2"}
    paths = RunPaths(tmp_path / "q", tmp_path / "s", tmp_path / "sl", tmp_path / "ql",
                     tmp_path / "p", tmp_path)
    args = build_command(config, paths)
    objects = [args[i + 1] for i, a in enumerate(args) if a == "-object"]
    assert objects == ["tls-creds-psk,id=mhm-tls-server,dir=/d,,1,endpoint=server",
                       "tls-creds-psk,id=mhm-tls-client,dir=/d,,1,endpoint=client,"
                       "username=qemu"]
    x509_args = TLSConfig("x509", Path("/c")).object_args()
    assert "verify-peer=on" in x509_args[1] and "endpoint=client" in x509_args[3]


def test_vm_refuses_to_start_without_credentials(tmp_path: Path) -> None:
    vm = VM("vm1", {"migration_tls": "x509", "migration_tls_dir": str(tmp_path / "none"),
                    "qemu_binary": "/nonexistent/qemu"}, tmp_path / "log")
    with pytest.raises(VMLaunchError) as info:
        vm.create()
    assert "ca-cert.pem" in str(info.value) and "make_tls_credentials" in str(info.value)
    assert not vm.is_alive()


def test_a_rename_between_manifest_read_and_directory_check(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The race behind a rare failure of test_concurrent_callers_agree: the
    manifest read fails because the directory is not there yet, then another
    caller's directory is renamed into place before the emptiness check."""
    made = make_tls_credentials(tmp_path / "tls", "psk")
    real_read_text = Path.read_text
    missed: list[Path] = []

    def read_text_once_too_early(self: Path, *args: Any, **kwargs: Any) -> str:
        if self.name == MANIFEST and not missed:
            missed.append(self)
            raise FileNotFoundError(self)
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text_once_too_early)
    again = make_tls_credentials(tmp_path / "tls", "psk")
    assert missed and again.dir == made.dir
