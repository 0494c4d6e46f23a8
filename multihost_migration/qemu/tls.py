"""TLS credentials for encrypted migration: x509 certificates or a PSK.

    tls = make_tls_credentials(shared_dir / "tls", "x509", ["host1", "198.18.0.2"])
    params: migration_tls = x509, migration_tls_dir = <tls.directory>

Files in the directory (the names QEMU's tls-creds objects look for):

    x509  ca-cert.pem  server-cert.pem server-key.pem  client-cert.pem client-key.pem
    psk   keys.psk     ("<username>:<hex key>" lines)
    both  mhm-tls.json (kind, hostnames, psk username; written last)

Every VM with `migration_tls` set gets *two* tls-creds objects at create():
a server endpoint (used by migrate-incoming) and a client endpoint (used by
migrate), so one QEMU can be a destination first and a source later.  Both
verify the peer (x509: verify-peer=on; the server certificate names every
hostname given here, as DNS names or IP addresses).

`make_tls_credentials` is idempotent and safe when several hosts call it at
once on shared storage: the files are generated in a private temporary
directory beside the target, which is then renamed into place; whoever
renames first wins and the others load the winner's manifest.
"""

from __future__ import annotations

import datetime
import errno
import ipaddress
import json
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from ..errors import ConfigError

TLS_KINDS = ("x509", "psk")
MANIFEST = "mhm-tls.json"
SERVER_ID = "mhm-tls-server"
CLIENT_ID = "mhm-tls-client"
DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1")
PSK_USERNAME = "qemu"
X509_FILES = ("ca-cert.pem", "server-cert.pem", "server-key.pem",
              "client-cert.pem", "client-key.pem")
PSK_FILES = ("keys.psk",)
_VALID_DAYS = 3650


def _qarg(value: object) -> str:
    return str(value).replace(",", ",,")


@dataclass(frozen=True)
class TLSConfig:
    """Which credentials a VM's migrations use (no I/O on construction)."""

    kind: str
    directory: Path
    hostname: Optional[str] = None   # migrate parameter tls-hostname (source)
    psk_username: str = PSK_USERNAME

    def __post_init__(self) -> None:
        if self.kind not in TLS_KINDS:
            raise ConfigError(f"migration_tls={self.kind!r}, expected one of {TLS_KINDS}")

    @property
    def dir(self) -> Path:
        return self.directory

    @property
    def files(self) -> tuple[str, ...]:
        return X509_FILES if self.kind == "x509" else PSK_FILES

    def missing_files(self) -> list[str]:
        """Credential files QEMU will need that are not in `directory`."""
        return [name for name in self.files if not (self.directory / name).is_file()]

    def object_args(self) -> list[str]:
        """The -object options: a server and a client endpoint."""
        path = _qarg(self.directory)
        if self.kind == "x509":
            return ["-object", f"tls-creds-x509,id={SERVER_ID},dir={path},"
                               f"endpoint=server,verify-peer=on",
                    "-object", f"tls-creds-x509,id={CLIENT_ID},dir={path},"
                               f"endpoint=client,verify-peer=on"]
        return ["-object", f"tls-creds-psk,id={SERVER_ID},dir={path},endpoint=server",
                "-object", f"tls-creds-psk,id={CLIENT_ID},dir={path},endpoint=client,"
                           f"username={_qarg(self.psk_username)}"]

    def incoming_parameters(self) -> dict[str, Any]:
        return {"tls-creds": SERVER_ID}

    def outgoing_parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = {"tls-creds": CLIENT_ID}
        if self.hostname:
            params["tls-hostname"] = self.hostname
        return params

    @classmethod
    def from_params(cls, vm: str, params: Mapping[str, Any]) -> Optional["TLSConfig"]:
        """From `migration_tls` (x509|psk; empty/no = off), `migration_tls_dir`,
        `migration_tls_hostname` and `migration_tls_psk_username`."""
        kind = tls_kind(params, vm)
        if kind is None:
            return None
        directory = str(params.get("migration_tls_dir") or "")
        if not directory:
            raise ConfigError(f"{vm}: migration_tls={kind} needs migration_tls_dir")
        return cls(kind, Path(directory),
                   hostname=str(params.get("migration_tls_hostname") or "") or None,
                   psk_username=str(params.get("migration_tls_psk_username")
                                    or PSK_USERNAME))


def tls_kind(params: Mapping[str, Any], what: str = "params") -> Optional[str]:
    """`migration_tls`: x509 or psk, None when off (empty, no, none, off)."""
    kind = str(params.get("migration_tls") or "").strip()
    if kind in ("", "no", "none", "off"):
        return None
    if kind not in TLS_KINDS:
        raise ConfigError(f"{what}: migration_tls={kind!r}, expected one of "
                          f"{TLS_KINDS} or no")
    return kind


def make_tls_credentials(directory: Union[str, Path], kind: str,
                         hostnames: Iterable[str] = DEFAULT_HOSTNAMES,
                         psk_username: str = PSK_USERNAME) -> TLSConfig:
    """Create (or reuse) credentials of `kind` in `directory`.

    Reuses what is there when its manifest has the same kind and names all
    `hostnames`; raises ConfigError when the directory holds something else.
    """
    directory = Path(directory)
    names = sorted(set(hostnames))
    if kind not in TLS_KINDS:
        raise ConfigError(f"TLS kind {kind!r}, expected one of {TLS_KINDS}")
    if not names and kind == "x509":
        raise ConfigError("x509 credentials need at least one hostname")
    existing = _load(directory, kind, names, psk_username)
    if existing is not None:
        return existing
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        if kind == "x509":
            _write_x509(tmp, names)
        else:
            _write_psk(tmp, psk_username)
        _write_file(tmp / MANIFEST, json.dumps(
            {"kind": kind, "hostnames": names, "psk_username": psk_username}) + "\n", 0o644)
        os.chmod(tmp, 0o755)
        _rename_into_place(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    loaded = _load(directory, kind, names, psk_username)
    if loaded is None:  # pragma: no cover - only if someone deletes it under us
        raise ConfigError(f"{directory}: TLS credentials vanished after creation")
    return loaded


def _rename_into_place(tmp: Path, directory: Path) -> None:
    try:
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
        os.rename(tmp, directory)
    except OSError as err:
        # another host renamed its directory first: use that one
        if err.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOENT):
            raise ConfigError(f"{directory}: cannot install TLS credentials: {err}") from err


def _load(directory: Path, kind: str, names: Sequence[str],
          psk_username: str) -> Optional[TLSConfig]:
    manifest = directory / MANIFEST
    try:
        data = json.loads(manifest.read_text())
    except FileNotFoundError:
        if directory.is_dir() and any(directory.iterdir()):
            if manifest.is_file():   # another caller's rename landed in between
                return _load(directory, kind, names, psk_username)
            raise ConfigError(f"{directory}: exists without {MANIFEST}; refusing to "
                              f"put TLS credentials there") from None
        return None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{manifest}: unreadable TLS manifest: {err}") from err
    have = set(data.get("hostnames") or [])
    if (data.get("kind") != kind or not set(names) <= have
            or (kind == "psk" and data.get("psk_username") != psk_username)):
        raise ConfigError(f"{directory}: holds {data.get('kind')} credentials for "
                          f"{sorted(have)}, not {kind} for {list(names)}")
    config = TLSConfig(kind, directory, psk_username=psk_username)
    missing = config.missing_files()
    if missing:
        raise ConfigError(f"{directory}: TLS credentials incomplete, missing {missing}")
    return config


def _write_file(path: Path, text: Union[str, bytes], mode: int) -> None:
    data = text.encode() if isinstance(text, str) else text
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_psk(directory: Path, username: str) -> None:
    if ":" in username or not username:
        raise ConfigError(f"PSK username {username!r} must be non-empty without ':'")
    _write_file(directory / "keys.psk", f"{username}:{secrets.token_hex(32)}\n", 0o600)


def _write_x509(directory: Path, hostnames: Sequence[str]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca_key = _rsa_key()
    ca_name = _name(f"mhm migration CA {secrets.token_hex(4)}")
    ca_cert = _certificate(ca_name, ca_name, ca_key, ca_key, ca=True)
    _write_file(directory / "ca-cert.pem", _pem(ca_cert), 0o644)
    sans: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    for role in ("server", "client"):
        key = _rsa_key()
        cert = _certificate(_name(f"{hostnames[0]} {role}"), ca_name, key, ca_key,
                            ca=False, role=role, sans=sans)
        _write_file(directory / f"{role}-cert.pem", _pem(cert), 0o644)
        _write_file(directory / f"{role}-key.pem", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption()), 0o600)


def _rsa_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "multihost_migration"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def _pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return bytes(cert.public_bytes(serialization.Encoding.PEM))


def _certificate(subject: Any, issuer: Any, key: Any, issuer_key: Any, ca: bool,
                 role: str = "", sans: Sequence[Any] = ()) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=not ca, key_encipherment=not ca,
                   key_cert_sign=ca, crl_sign=ca, content_commitment=False,
                   data_encipherment=False, key_agreement=False,
                   encipher_only=False, decipher_only=False), critical=True))
    if not ca:
        usage = (ExtendedKeyUsageOID.SERVER_AUTH if role == "server"
                 else ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)),
                                            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())
