"""Install this suite on a host: a versioned virtualenv built from a wheelhouse.

    ensure_client(remote, wheelhouse) -> "/var/lib/mhm-client/venv-0.1.0-1a2b3c4d/bin/python"

The host needs no network and no checkout: only a Python of the wheelhouse's
version with `venv`/`ensurepip` (Debian: python3-venv), `flock` and
`sha256sum`.  Steps, each with a deadline:

1. fast path, one SSH command: the venv's python imports multihost_migration
   from the venv at the wheelhouse's version, and the marker file (written
   last by an install) names the wheelhouse's key.  Done if so.
2. probe the host python (version, arch, glibc, venv, ensurepip, flock) and
   refuse a host the platform wheels do not fit, before uploading anything;
3. upload the wheels, their SHA256SUMS and the marker over SFTP into a fresh
   `<base>/.upload-XXXXXX` (every caller its own: uploads never collide);
4. one shell script under `flock <base>/.install.lock`: check again (another
   caller may have finished meanwhile), verify the sha256s, `python -m venv`,
   `pip install --no-index --find-links`, import check, marker;
5. remove the upload directory, whatever happened.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import shlex
import time
from dataclasses import dataclass
from typing import Any

import paramiko

from multihost_migration.errors import ClientInstallError, MigrationTestError, RemoteError
from multihost_migration.remote import CommandResult, RemoteHost
from multihost_migration.server.wheelhouse import Wheelhouse, check_host_python

log = logging.getLogger(__name__)

DEFAULT_BASE_DIR = "/var/lib/mhm-client"
_WORKDIR_NAME = re.compile(r"[A-Za-z0-9_.,:+=@-]+")
MARKER = ".mhm-client.json"
STEP = "MHM-STEP "

# Facts about the host python, one JSON line.
PROBE = """\
import json, platform, shutil, sys
from importlib.util import find_spec
lib, ver = platform.libc_ver()
print(json.dumps({"implementation": sys.implementation.name,
    "version": "%d.%d" % sys.version_info[:2], "full_version": platform.python_version(),
    "machine": platform.machine(), "libc": (lib + " " + ver).strip(),
    "executable": sys.executable, "venv": find_spec("venv") is not None,
    "ensurepip": find_spec("ensurepip") is not None,
    "flock": shutil.which("flock") is not None,
    "sha256sum": shutil.which("sha256sum") is not None}))
"""

# Run by the venv's python: argv = marker, key, version, venv dir.  Prints
# {"ready": bool, "reason": str}; exits 0 only when ready.
CHECK = """\
import json, os, sys
marker, key, version, venv = sys.argv[1:5]
def done(ready, reason):
    print(json.dumps({"ready": ready, "reason": reason}))
    sys.exit(0 if ready else 1)
try:
    with open(marker) as f:
        found = json.load(f).get("key")
except (OSError, ValueError, AttributeError) as err:
    done(False, "no valid marker: %s" % err)
if found != key:
    done(False, "marker names build %s, want %s" % (str(found)[:8], key[:8]))
try:
    import multihost_migration as m
except Exception as err:
    done(False, "cannot import multihost_migration: %r" % err)
where = os.path.realpath(m.__file__)
if not where.startswith(os.path.realpath(venv) + os.sep):
    done(False, "multihost_migration imports from %s, outside %s" % (where, venv))
if m.__version__ != version:
    done(False, "version %s installed, want %s" % (m.__version__, version))
done(True, "version %s, build %s" % (version, key[:8]))
"""

INSTALL = """\
set -eu
umask 022
for v in $(env | sed -n 's/^\\(PIP_[A-Za-z0-9_]*\\)=.*/\\1/p'); do unset "$v"; done
unset PYTHONPATH PYTHONHOME PYTHONUSERBASE
export PIP_CONFIG_FILE=/dev/null PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONNOUSERSITE=1
echo "MHM-STEP lock"
exec 9>"$BASE/.install.lock"
flock -w "$LOCK_TIMEOUT" 9
echo "MHM-STEP recheck"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$CHECK" "$VENV/$MARKER" "$KEY" \
        "$VERSION" "$VENV" >/dev/null 2>&1; then
    echo MHM-PRESENT
    exit 0
fi
find "$BASE" -maxdepth 1 -name '.upload-*' -mmin +240 -exec rm -rf {} + 2>/dev/null || true
echo "MHM-STEP verify"
(cd "$UPLOAD" && sha256sum --quiet -c SHA256SUMS)
echo "MHM-STEP venv"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
echo "MHM-STEP pip"
"$VENV/bin/python" -m pip install --quiet --no-index --no-cache-dir --only-binary :all: \
    --find-links "$UPLOAD" "$PACKAGE==$VERSION"
echo "MHM-STEP import"
"$VENV/bin/python" -m pip check
"$VENV/bin/python" -c "import multihost_migration.remote, multihost_migration.client"
"$VENV/bin/python" -c "$CHECK" "$UPLOAD/marker.json" "$KEY" "$VERSION" "$VENV"
echo "MHM-STEP marker"
cp "$UPLOAD/marker.json" "$VENV/$MARKER.tmp"
mv -f "$VENV/$MARKER.tmp" "$VENV/$MARKER"
echo MHM-INSTALLED
"""


@dataclass(frozen=True)
class InstallOutcome:
    host: str
    python: str         # the venv's python on the host
    action: str         # "present" (fast path or done by a concurrent caller) / "installed"
    seconds: float


def make_workdir(remote: RemoteHost, name: str, base: str = "/tmp",
                 timeout: float = 30.0) -> str:
    """A fresh private directory for one job on the host: `mktemp -d`
    (mode 0700, never an existing directory) named `<base>/<name>.XXXXXXXX`.
    The name keeps the job's processes findable; any character but
    [A-Za-z0-9_.,:+=@-] in it becomes "_", so it stays one path component."""
    name = re.sub(r"[^A-Za-z0-9_.,:+=@-]", "_", name).lstrip(".") or "mhm"
    template = posixpath.join(base, name + ".XXXXXXXX")
    result = remote.run(f"umask 077 && mktemp -d {shlex.quote(template)}", timeout=timeout)
    lines = result.stdout.strip().splitlines()
    path = lines[-1] if lines else ""
    if (posixpath.dirname(path) != posixpath.normpath(base)
            or not posixpath.basename(path).startswith(name + ".")
            or not _WORKDIR_NAME.fullmatch(posixpath.basename(path))):
        raise RemoteError(f"{remote.name}: mktemp -d {template} answered {path!r}, "
                          "not a new directory of that name")
    return path


def venv_dir(wheelhouse: Wheelhouse, base_dir: str = DEFAULT_BASE_DIR) -> str:
    return posixpath.join(base_dir, f"venv-{wheelhouse.version}-{wheelhouse.key[:8]}")


def ensure_client(remote: RemoteHost, wheelhouse: Wheelhouse,
                  base_dir: str = DEFAULT_BASE_DIR, python: str = "python3",
                  timeout: float = 600.0) -> str:
    """The path of a python on `remote` that runs this suite's wheelhouse build."""
    return install_client(remote, wheelhouse, base_dir, python, timeout).python


def install_client(remote: RemoteHost, wheelhouse: Wheelhouse,
                   base_dir: str = DEFAULT_BASE_DIR, python: str = "python3",
                   timeout: float = 600.0) -> InstallOutcome:
    """ensure_client, telling what it did and how long it took."""
    start = time.monotonic()
    deadline = start + timeout
    venv = venv_dir(wheelhouse, base_dir)
    venv_python = f"{venv}/bin/python"
    ready, reason = check_installed(remote, wheelhouse, venv, _left(deadline, remote, "check"))
    if ready:
        log.debug("%s: client present in %s (%s)", remote.name, venv, reason)
        return InstallOutcome(remote.name, venv_python, "present", time.monotonic() - start)
    log.info("%s: installing client %s into %s (%s)", remote.name, wheelhouse.version, venv,
             reason)
    info = probe_python(remote, python, _left(deadline, remote, "python check"))
    check_host_python(wheelhouse.manifest, remote.name, python, info)
    check_host_tools(remote.name, python, info)
    upload = _run(remote, f"mkdir -p {shlex.quote(base_dir)} && "
                          f"mktemp -d {shlex.quote(base_dir)}/.upload-XXXXXX",
                  "upload", deadline).stdout.strip()
    try:
        _upload(remote, wheelhouse, upload, _marker(wheelhouse, info), deadline)
        action = _install(remote, wheelhouse, base_dir, venv, upload, python, deadline)
    finally:
        try:
            remote.run(f"rm -rf {shlex.quote(upload)}", timeout=60.0, check=False)
        except MigrationTestError as err:
            log.warning("%s: could not remove %s: %s", remote.name, upload, err)
    seconds = time.monotonic() - start
    log.info("%s: client %s %s in %.1f s", remote.name, venv, action, seconds)
    return InstallOutcome(remote.name, venv_python, action, seconds)


def check_installed(remote: RemoteHost, wheelhouse: Wheelhouse, venv: str,
                    timeout: float) -> tuple[bool, str]:
    """(ready, why) from one SSH command."""
    args = [f"{venv}/bin/python", "-c", CHECK, f"{venv}/{MARKER}", wheelhouse.key,
            wheelhouse.version, venv]
    command = (f"if [ -x {shlex.quote(args[0])} ]; then {_quote(args)}; else "
               f"echo '{{\"ready\": false, \"reason\": \"no venv at {venv}\"}}'; fi")
    result = remote.run(command, timeout=timeout, check=False)
    return parse_check(result.stdout, result.stderr)


def parse_check(stdout: str, stderr: str = "") -> tuple[bool, str]:
    for line in reversed(stdout.splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "ready" in data:
            return bool(data["ready"]), str(data.get("reason", ""))
    return False, f"venv python failed: {(stdout + stderr).strip()[-300:]}"


def probe_python(remote: RemoteHost, python: str, timeout: float) -> dict[str, Any]:
    result = remote.run(f"{shlex.quote(python)} -c {shlex.quote(PROBE)}", timeout=timeout,
                        check=False)
    output = result.stdout + result.stderr
    if result.exit_status != 0:
        raise ClientInstallError(remote.name, "python check",
                                 f"{python} did not run (exit status {result.exit_status}); "
                                 "is Python 3 installed on the host?", output)
    try:
        info = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as err:
        raise ClientInstallError(remote.name, "python check",
                                 f"unexpected answer from {python}", output) from err
    if not isinstance(info, dict):
        raise ClientInstallError(remote.name, "python check",
                                 f"unexpected answer from {python}", output)
    return info


def check_host_tools(host: str, python: str, info: dict[str, Any]) -> None:
    version = info.get("version", "3")
    if not info.get("venv") or not info.get("ensurepip"):
        missing = "venv" if not info.get("venv") else "ensurepip"
        raise ClientInstallError(
            host, "python check",
            f"{python} ({info.get('executable')}) has no {missing} module, needed to create "
            f"the client virtualenv: install the package python{version}-venv "
            f"(Debian/Ubuntu: apt-get install python3-venv python{version}-venv)")
    for tool, package in (("flock", "util-linux"), ("sha256sum", "coreutils")):
        if not info.get(tool):
            raise ClientInstallError(host, "python check",
                                     f"{tool} not found on the host: install {package}")


def _marker(wheelhouse: Wheelhouse, info: dict[str, Any]) -> str:
    return json.dumps({"package": wheelhouse.manifest.package, "version": wheelhouse.version,
                       "key": wheelhouse.key, "python": info.get("full_version"),
                       "base_python": info.get("executable"),
                       "installed": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, sort_keys=True)


def _upload(remote: RemoteHost, wheelhouse: Wheelhouse, directory: str, marker: str,
            deadline: float) -> None:
    sums = "".join(f"{w.sha256}  {w.file}\n" for w in wheelhouse.manifest.wheels)
    try:
        with remote.client.open_sftp() as sftp:
            channel = sftp.get_channel()
            for path in wheelhouse.wheel_paths():
                if channel is not None:
                    channel.settimeout(_left(deadline, remote, "upload"))
                sftp.put(str(path), f"{directory}/{path.name}")
            for name, text in (("SHA256SUMS", sums), ("marker.json", marker)):
                with sftp.open(f"{directory}/{name}", "w") as f:
                    f.write(text)
    except (OSError, paramiko.SSHException) as err:
        raise ClientInstallError(remote.name, "upload",
                                 f"SFTP to {directory} failed: {err}") from err


def _install(remote: RemoteHost, wheelhouse: Wheelhouse, base_dir: str, venv: str,
             upload: str, python: str, deadline: float) -> str:
    left = _left(deadline, remote, "install")
    env = {"BASE": base_dir, "VENV": venv, "UPLOAD": upload, "PYTHON": python,
           "PACKAGE": wheelhouse.manifest.package, "VERSION": wheelhouse.version,
           "KEY": wheelhouse.key, "MARKER": MARKER, "CHECK": CHECK,
           "LOCK_TIMEOUT": str(max(1, int(left - 5)))}
    command = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command += f" sh -c {shlex.quote(INSTALL)}"
    result = remote.run(command, timeout=left, check=False)
    output = result.stdout + result.stderr
    if result.exit_status == 0 and "MHM-PRESENT" in result.stdout:
        return "present"
    if result.exit_status == 0 and "MHM-INSTALLED" in result.stdout:
        return "installed"
    step = last_step(result.stdout)
    reason = f"exit status {result.exit_status}"
    if step == "lock":
        reason = f"another install held {base_dir}/.install.lock past the deadline"
    elif step == "venv" and "ensurepip" in output:
        reason = (f"{python} -m venv failed: ensurepip is not available; install the "
                  "package python3-venv (Debian/Ubuntu)")
    raise ClientInstallError(remote.name, step, reason, output)


def last_step(stdout: str) -> str:
    steps = [line[len(STEP):].strip() for line in stdout.splitlines() if line.startswith(STEP)]
    return steps[-1] if steps else "install script start"


def _left(deadline: float, remote: RemoteHost, step: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ClientInstallError(remote.name, step, "deadline passed before this step")
    return left


def _run(remote: RemoteHost, command: str, step: str, deadline: float) -> CommandResult:
    try:
        return remote.run(command, timeout=_left(deadline, remote, step))
    except RemoteError as err:
        raise ClientInstallError(remote.name, step, str(err)) from err


def _quote(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)
