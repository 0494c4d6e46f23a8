"""Preflight: find, before any guest starts, what would break a run mid-way.

On each host: SSH works, the suite is installed (same version), the QEMU
binary runs, KVM is usable if the params ask for it only, the images
directory exists, there is memory for the guests.  Between hosts: the
storage is really shared (a token written on one host is read on the
others), and TCP connections get through in both directions on a
migration-range port (firewalls are found here, not mid-migration).
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import shlex
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional, Sequence, Union

import multihost_migration
from multihost_migration.errors import ConfigError, MigrationTestError
from multihost_migration.imagespec import DEFAULT_IMAGES_DIR, image_names, image_spec
from multihost_migration.params import Params
from multihost_migration.remote import RemoteHost, SshTarget
from multihost_migration.server import qemu_caps
from multihost_migration.server.qemu_caps import QemuInfo

if TYPE_CHECKING:   # loaded on first use: importing the controller loads no qemu/ module
    from multihost_migration.qemu.features import QemuFeatures

log = logging.getLogger(__name__)

#: (host, binary, its --version line) -> its QMP schema's features: asked
#: once per binary for the whole job, however many groups and tests use it.
_SCHEMA_CACHE: dict[tuple[str, str, str], "QemuFeatures"] = {}
_SCHEMA_LOCK = threading.Lock()

LISTEN_SNIPPET = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(1); s.settimeout(float(sys.argv[2]))\n"
    "print('LISTENING', flush=True)\n"
    "c, a = s.accept(); c.sendall(b'mhm-preflight-ok'); c.close()\n")
CONNECT_SNIPPET = (
    "import socket,sys,time\n"
    "end=time.monotonic()+float(sys.argv[3]); err=None\n"
    "while time.monotonic()<end:\n"
    "    try:\n"
    "        c=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)\n"
    "        print(c.recv(64).decode()); sys.exit(0)\n"
    "    except OSError as e:\n"
    "        err=e; time.sleep(0.1)\n"
    "print('CONNECT FAILED', err); sys.exit(1)\n")


@dataclass(frozen=True)
class Check:
    host: str
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.host:<16} {self.name:<14} {self.detail}"


class Preflight:
    """The checks of one group of hosts, for every test selected to run on
    it: `params` is one test dict or the list of them; each need (a QEMU
    binary, /dev/kvm, a program, an images directory, a guest file, memory,
    a clock bound) is checked once, however many tests share it, on the
    params each host gets in each test (its `_hostN` overrides applied)."""

    def __init__(self, targets: Mapping[str, SshTarget],
                 params: Union[Mapping[str, Any], Sequence[Mapping[str, Any]]],
                 remote_python: str, addresses: Mapping[str, str]) -> None:
        self.targets = dict(targets)
        self.tests: list[Mapping[str, Any]] = (
            [params] if isinstance(params, Mapping) else list(params))
        self.params: Mapping[str, Any] = self.tests[0] if self.tests else {}
        self.python = remote_python
        self.addresses = dict(addresses)
        self.checks: list[Check] = []
        self._lock = threading.Lock()
        self._remotes: dict[str, RemoteHost] = {}
        self.qemu: dict[tuple[str, str], QemuInfo] = {}   # (host, binary) -> what it is
        self.features: dict[tuple[str, str], "QemuFeatures"] = {}   # its QMP schema's

    def add(self, host: str, name: str, ok: bool, detail: str) -> None:
        with self._lock:
            self.checks.append(Check(host, name, ok, detail))

    def run(self) -> list[Check]:
        self._params()
        try:
            threads = [threading.Thread(target=self._host_checks, args=(h,), daemon=True)
                       for h in self.targets]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            answered = {c.host for c in self.checks if c.name == "ssh"}
            for host in set(self.targets) - answered:
                self.add(host, "ssh", False, "no answer within 120 s")
            if len(self._remotes) == len(self.targets):
                self._machine_types()
                self._shared_storage()
                self._connectivity()
        finally:
            for remote in self._remotes.values():
                remote.close()
        return self.checks

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    # -- what the selected tests need ------------------------------------------

    def _host_params(self, host: str) -> list[Params]:
        """The params `host` gets in each selected test: its `_hostN`
        overrides applied, N its position among the targets (as dispatch
        builds them); the test's own params for a host not among them."""
        hosts = list(self.targets)
        return [Params(test).object_params(f"host{hosts.index(host) + 1}")
                if host in hosts else Params(test) for test in self.tests]

    def _distinct(self, host: str, key: str, default: str) -> list[str]:
        """The values of `key` over the selected tests, each once, in order."""
        return list(dict.fromkeys(str(p.get(key, default)) for p in self._host_params(host)))

    def _vm_params(self, host: str) -> Iterator[tuple[str, Params]]:
        """(vm, its params) of every VM of every selected test."""
        for params in self._host_params(host):
            for vm in params.objects("vms"):
                yield vm, params.object_params(vm)

    # -- the checks --------------------------------------------------------------

    def _params(self) -> None:
        """Every VM's params make a valid QEMU configuration (no host needed);
        a VM configured alike in several tests is checked once, a failure
        names the tests it concerns."""
        failed: dict[str, list[str]] = {}
        seen: set[str] = set()
        vms: list[str] = []
        for test in self.tests:
            name = str(test.get("shortname") or test.get("name") or "")
            for problem in self._vm_problems(Params(test), seen, vms):
                failed.setdefault(problem, []).append(name)
        for problem, tests in failed.items():
            names = [t for t in tests if t]
            self.add("controller", "params", False, problem if len(self.tests) < 2 or
                     not names else f"{problem} (in {', '.join(names)})")
        if not failed:
            self.add("controller", "params", True, f"vms {vms} configured" + (
                f" in {len(self.tests)} tests" if len(self.tests) > 1 else ""))

    @staticmethod
    def _vm_problems(params: Params, seen: set[str], vms: list[str]) -> list[str]:
        """Why the VMs of one test make no valid QEMU configuration; VM
        configurations in `seen` (JSON) are skipped, new ones added."""
        from multihost_migration.qemu.config import VMConfig
        if params.get("migration_tls") not in (None, "", "no") and \
                not params.get("migration_tls_dir"):
            # MultihostMigration makes the job's credentials (mhm-tls-<job id>)
            params["migration_tls_dir"] = "mhm-tls-<job id>"
        problems = []
        for vm in params.objects("vms"):
            vparams = params.object_params(vm)
            key = json.dumps([vm, sorted(vparams.items())], default=str)
            if key in seen:
                continue
            seen.add(key)
            vms += [] if vm in vms else [vm]
            try:
                VMConfig.from_params(vm, vparams)
            except MigrationTestError as err:
                problems.append(str(err))
                break   # as before: the test's first broken VM
        return problems

    def _run(self, host: str, command: str, timeout: float = 30.0) -> tuple[int, str]:
        """(exit status, stdout) on success; on failure stdout + stderr, the
        evidence.  A login shell may print noise on stderr (e.g. a pyenv
        rehash racing another session): parsed output must not include it."""
        result = self._remotes[host].run(command, timeout=timeout, check=False)
        if result.exit_status == 0:
            return 0, result.stdout.strip()
        return result.exit_status, (result.stdout + result.stderr).strip()

    def _host_checks(self, host: str) -> None:
        remote = RemoteHost(self.targets[host])
        try:
            remote.connect()
        except MigrationTestError as err:
            self.add(host, "ssh", False, str(err))
            return
        except Exception as err:  # e.g. an unreadable key file: a failed check, not lost
            self.add(host, "ssh", False, f"{type(err).__name__}: {err}")
            return
        with self._lock:
            self._remotes[host] = remote
        self.add(host, "ssh", True, f"{self.targets[host].user}@{self.targets[host].hostname}")
        try:
            self._suite(host)
            self._qemu(host)
            self._programs(host)
            self._images_dir(host)
            self._guest_files(host)
            self._memory(host)
            self._clock(host)
        except MigrationTestError as err:
            self.add(host, "ssh", False, f"lost the connection: {err}")

    def _suite(self, host: str) -> None:
        code, out = self._run(host, f"{self.python} -c 'import multihost_migration as m; "
                                    f"print(m.__version__)'")
        want = multihost_migration.__version__
        if code != 0:
            self.add(host, "suite", False, f"{self.python} cannot import multihost_migration: "
                                           f"{out[-300:]}")
        else:
            self.add(host, "suite", out == want, f"version {out}" + (
                "" if out == want else f", controller has {want}"))

    def _qemu(self, host: str) -> None:
        for binary in self._distinct(host, "qemu_binary", "qemu-system-x86_64"):
            code, out = self._run(host, f"{shlex.quote(binary)} --version")
            self.add(host, "qemu", code == 0, out.splitlines()[0] if code == 0 else
                     f"{binary} does not run: {out[-300:]}")
            if code == 0:
                self._query_machines(host, binary, out)
                if any(p.get("qemu_features") for p in self._host_params(host)):
                    self._query_schema(host, binary, out.splitlines()[0])
        if "kvm" in self._distinct(host, "accel", "tcg"):
            code, out = self._run(host, "test -r /dev/kvm -a -w /dev/kvm && echo usable")
            self.add(host, "kvm", code == 0, "/dev/kvm usable" if code == 0 else
                     "accel = kvm but /dev/kvm is missing or not writable")

    def _query_machines(self, host: str, binary: str, version_text: str) -> None:
        """The machine types of `binary` on `host`, asked of QEMU itself."""
        code, out = self._run(host, f"{shlex.quote(binary)} -machine help")
        if code != 0:
            self.add(host, "machines", False, f"{binary} -machine help: {out[-300:]}")
            return
        try:
            info = qemu_caps.info_from_output(binary, version_text, out)
        except ValueError as err:
            self.add(host, "machines", False, f"{binary}: {err}")
            return
        with self._lock:
            self.qemu[(host, binary)] = info

    def _query_schema(self, host: str, binary: str, version: str) -> None:
        """The QMP schema of `binary` on `host` (query-qmp-schema), once per
        binary and version for the job."""
        from multihost_migration.qemu import features as qemu_features
        key = (host, binary, version)
        with _SCHEMA_LOCK:
            known = _SCHEMA_CACHE.get(key)
        for attempt in range(3 if known is None else 0):   # a transcript cut short: again
            code, out = self._run(host, qemu_features.probe_command(binary), timeout=60)
            try:
                known = qemu_features.QemuFeatures.from_schema(
                    qemu_features.schema_from_transcript(out))
                break
            except ValueError as err:
                if attempt == 2:
                    self.add(host, "qmp schema", False, f"{binary}: query-qmp-schema "
                             f"(exit {code}, 3 tries): {err}")
                    return
        if known is None:
            return
        with _SCHEMA_LOCK:
            _SCHEMA_CACHE[key] = known
        with self._lock:
            self.features[(host, binary)] = known
        self.add(host, "qmp schema", True, f"{binary}: {len(known.names)} features")

    def _test_features(self, test: Mapping[str, Any]) -> dict[str, "QemuFeatures"]:
        """host -> the features of the QEMU it runs in `test`."""
        index = next((i for i, t in enumerate(self.tests) if t is test), None)
        if index is None:
            return {}
        out = {}
        for host in self.targets:
            binary = str(self._host_params(host)[index].get("qemu_binary",
                                                             "qemu-system-x86_64"))
            if (host, binary) in self.features:
                out[host] = self.features[(host, binary)]
        return out

    def not_applicable(self, test: Mapping[str, Any]) -> Optional[str]:
        """Why `test` cannot run on these hosts: a feature it declares
        (`qemu_features`) missing from a host's QMP schema, named with the
        host, the binary and its version; None when every host has them."""
        from multihost_migration.qemu import features as qemu_features
        wanted = qemu_features.needed(test)
        if not wanted:
            return None
        index = next(i for i, t in enumerate(self.tests) if t is test)
        infos = self._test_qemu(index)
        reasons = []
        for host, have in self._test_features(test).items():
            missing = [qemu_features.describe(f) for f in have.missing(wanted)]
            if missing:
                what = infos[host].describe() if host in infos else "its QEMU"
                reasons.append(f"{host}: {what} lacks {', '.join(missing)} "
                               f"(not in its QMP schema)")
        return "; ".join(reasons) or None

    def pair_params(self, test: Mapping[str, Any]) -> dict[str, str]:
        """The params that tell `test` what its hosts' QEMUs are: each one's
        version, in host order (`qemu_pair_versions`, for the known-defect
        rules of the scenarios) and, when it declares features, what every
        host's QEMU has (`qemu_pair_features`, MigrationPlan.supports)."""
        from multihost_migration.qemu import features as qemu_features
        out = {}
        index = next((i for i, t in enumerate(self.tests) if t is test), None)
        infos = self._test_qemu(index) if index is not None else {}
        if len(infos) == len(self.targets):
            out["qemu_pair_versions"] = " ".join(infos[h].version for h in self.targets)
        found = list(self._test_features(test).values())
        if not qemu_features.needed(test) or len(found) < len(self.targets):
            return out
        common = found[0]
        for other in found[1:]:
            common = common & other
        out[qemu_features.PAIR_PARAM] = common.to_param()
        return out

    def _test_qemu(self, index: int) -> dict[str, QemuInfo]:
        """host -> the QEMU it runs in test `index` (hosts whose binary ran)."""
        out = {}
        for host in self.targets:
            binary = str(self._host_params(host)[index].get("qemu_binary",
                                                             "qemu-system-x86_64"))
            if (host, binary) in self.qemu:
                out[host] = self.qemu[(host, binary)]
        return out

    def _machine_types(self) -> None:
        """Each VM's machine_type exists in its host's QEMU and means the
        same machine on every host; the types the hosts share, reported."""
        problems: dict[tuple[str, str], None] = {}
        shared: dict[str, None] = {}
        for index in range(len(self.tests)):
            infos = self._test_qemu(index)
            wanted = {host: {vm: str(p.get("machine_type", "q35")) for vm, p in
                             _vms(self._host_params(host)[index])} for host in infos}
            problems.update(dict.fromkeys(qemu_caps.machine_problems(wanted, infos)))
            versions = ", ".join(f"{h} {i.version}" for h, i in infos.items())
            common = qemu_caps.shared_machines(list(infos.values()))
            shared[f"{versions}: {len(common)} shared: {' '.join(common)}"] = None
        for host, problem in problems:
            self.add(host, "machine type", False, problem)
        for line in shared:
            self.add(",".join(self.targets), "machines", True, line)

    def qemu_summary(self, test: Mapping[str, Any]) -> dict[str, object]:
        """The results.json entry of `test` (one of the selected tests):
        each host's QEMU binary and version, the machine types they share."""
        index = next((i for i, t in enumerate(self.tests) if t is test), None)
        return {} if index is None else qemu_caps.report(self._test_qemu(index))

    def _programs(self, host: str) -> None:
        needed = ["qemu-img"]
        if "exec" in self._distinct(host, "migration_protocol", "tcp"):
            needed.append("socat")  # the exec transport pipes through it
        missing = []
        for program in needed:
            code, _ = self._run(host, f"command -v {shlex.quote(program)}")
            if code != 0:
                missing.append(program)
        self.add(host, "programs", not missing, "all present: " + " ".join(needed)
                 if not missing else f"missing {' '.join(missing)}: install it (Debian: "
                 f"apt-get install {' '.join('qemu-utils' if m == 'qemu-img' else m for m in missing)})")

    def _guest_files(self, host: str) -> None:
        """Kernel, initrd and pre-existing disk images the VMs boot from."""
        files = set()
        for vm, vparams in self._vm_params(host):
            files |= {str(vparams[k]) for k in ("kernel", "initrd") if vparams.get(k)}
            for image in image_names(vparams):
                try:
                    spec = image_spec(vm, image, vparams)
                except ConfigError:
                    continue   # reported by the params check
                if not spec.create:
                    files.add(str(spec.path))
        missing = []
        for path in sorted(files):
            code, _ = self._run(host, f"test -r {shlex.quote(str(path))}")
            if code != 0:
                missing.append(str(path))
        self.add(host, "guest files", not missing, f"{len(files)} present" if not missing
                 else f"missing {', '.join(missing)}: copy them to the shared storage "
                 "(for the lab guest: mhm guest build)")

    def _clock(self, host: str) -> None:
        bound = min(float(p.get("max_clock_skew", 2.0)) for p in self._host_params(host))
        before = time.time()
        code, out = self._run(host, "date +%s.%N")   # stdout only when it worked
        after = time.time()
        try:
            skew = float(out) - (before + after) / 2
        except ValueError:
            self.add(host, "clock", False, f"cannot read the clock: {out}")
            return
        # the host read its clock somewhere within the round trip: on a slow
        # connection only a skew beyond half of it is a measured one
        ok = abs(skew) - (after - before) / 2 <= bound
        self.add(host, "clock", ok, f"{skew:+.3f} s from the controller"
                 + (f" (+-{(after - before) / 2:.3f} s)" if after - before > 0.2 else "")
                 + ("" if ok else f" (bound {bound} s): sync the clocks "
                    "(NTP); guest downtime figures combine both hosts' clocks"))

    def _images_dir(self, host: str) -> None:
        for images in self._distinct(host, "images_base_dir", DEFAULT_IMAGES_DIR):
            code, out = self._run(host, f"test -d {shlex.quote(images)} -a -w "
                                        f"{shlex.quote(images)}")
            self.add(host, "images", code == 0, images + ("" if code == 0 else
                     " is missing or not writable (shared storage not mounted?)"))

    def _memory(self, host: str) -> None:
        code, out = self._run(host, "awk '/MemAvailable/ {print $2}' /proc/meminfo")
        if code != 0 or not out.isdigit():
            self.add(host, "memory", False, f"cannot read /proc/meminfo: {out}")
            return
        try:   # the tests run one after the other: the largest need counts
            need = max(self._memory_need(params) for params in self._host_params(host))
        except ValueError:
            return  # reported by the params check
        have = int(out) // 1024
        self.add(host, "memory", have >= need, f"{have} MiB available, guests need {need} MiB")

    @staticmethod
    def _memory_need(params: Mapping[str, Any]) -> int:
        """MiB one test's guests need on a host (ValueError: not a number)."""
        vms = str(params.get("vms", "vm1")).split()
        return sum(int(str(params.get(f"mem_{vm}", params.get("mem", 256))))
                   for vm in vms) * 2  # the incoming copy may overlap the running guest

    def _shared_storage(self) -> None:
        hosts = list(self.targets)
        for images in self._distinct(hosts[0], "images_base_dir", DEFAULT_IMAGES_DIR):
            self._shared_dir(hosts, images)

    def _needs_shared(self, images: str) -> list[str]:
        """The selected tests that keep `images` shared (storage_mode = shared)."""
        from multihost_migration.storage import StoragePlan
        hosts = list(self.targets)
        return [str(test.get("shortname") or test.get("name") or "?")
                for test, params in zip(self.tests, self._host_params(hosts[0]))
                if str(params.get("images_base_dir", DEFAULT_IMAGES_DIR)) == images
                and not StoragePlan.from_params(params).copy]

    def share_hint(self, hosts: list[str], images: str) -> str:
        """What to do when `images` is not shared: the exact commands of an
        NFS export on the first host and the mounts on the others, or copy."""
        first = self.addresses.get(hosts[0], hosts[0])
        clients = " ".join(f"{self.addresses.get(h, h)}(rw,sync,no_root_squash,"
                           f"no_subtree_check)" for h in hosts[1:])
        dir_ = shlex.quote(images)
        mounts = "; ".join(
            f"on {h}: apt-get install -y nfs-common && mount -t nfs {first}:{dir_} {dir_}"
            for h in hosts[1:])
        return (f"share it over NFS: on {hosts[0]}: apt-get install -y nfs-kernel-server "
                f"&& echo '{images} {clients}' >> /etc/exports && exportfs -ra; {mounts} "
                f"(and the same line in /etc/fstab); or migrate the disks along instead: "
                f"storage_mode = copy (each host keeps its own images)")

    def _shared_dir(self, hosts: list[str], images: str) -> None:
        token = secrets.token_hex(8)
        path = f"{images}/.mhm-preflight-{token}"
        code, out = self._run(hosts[0], f"echo {token} > {shlex.quote(path)}")
        if code != 0:
            self.add(hosts[0], "shared", False, f"cannot write {path}: {out}")
            return
        try:
            for host in hosts[1:]:
                code, out = self._run(host, f"cat {shlex.quote(path)}")
                if code == 0 and out == token:
                    self.add(host, "shared", True, f"sees {hosts[0]}'s file in {images}")
                    continue
                needs = self._needs_shared(images)
                self.add(host, "shared", not needs,
                         f"does not see the file {hosts[0]} wrote in {images}: the storage "
                         f"is not shared" + (
                             f", and storage_mode = shared needs it ({', '.join(needs)}): "
                             f"{self.share_hint(hosts, images)}" if needs else
                             " (fine: storage_mode = copy, each host its own images)"))
        finally:
            self._run(hosts[0], f"rm -f {shlex.quote(path)}")

    def _connectivity(self) -> None:
        hosts = list(self.targets)
        for src in hosts:
            for dst in hosts:
                if src != dst:
                    self._tcp(src, dst)

    def _tcp(self, src: str, dst: str, timeout: float = 10.0) -> None:
        # A random port may be taken on the destination (another job's
        # migration listens in the same range): try a few.
        for attempt in range(5):
            if self._tcp_once(src, dst, random.randint(49152, 60999), timeout,
                              retry=attempt < 4):
                return

    def _tcp_once(self, src: str, dst: str, port: int, timeout: float, retry: bool) -> bool:
        """One probe; False when the port was taken and `retry` allows another."""
        listener_ready = threading.Event()
        outcome: dict[str, Optional[str]] = {"listen": None}

        def listen() -> None:
            cmd = (f"{self.python} -c {shlex.quote(LISTEN_SNIPPET)} {port} {timeout}")

            def on_line(line: str) -> None:
                if "LISTENING" in line:
                    listener_ready.set()
            result = self._remotes[dst].run(cmd, timeout=timeout + 5, check=False,
                                            on_line=on_line)
            outcome["listen"] = (result.stdout + result.stderr).strip()
            listener_ready.set()

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        listener_ready.wait(timeout)
        addr = self.addresses[dst]
        code, out = self._run(src, f"{self.python} -c {shlex.quote(CONNECT_SNIPPET)} "
                                   f"{addr} {port} {timeout / 2}", timeout=timeout + 5)
        thread.join(timeout + 10)
        ok = code == 0 and "mhm-preflight-ok" in out
        if not ok and retry and "Address already in use" in (outcome["listen"] or ""):
            return False
        self.add(src, "tcp", ok, f"-> {dst} ({addr}:{port}) " + (
            "connects" if ok else f"blocked: {out[-200:]} {outcome['listen'] or ''}"))
        return True


def _vms(params: Params) -> Iterator[tuple[str, Params]]:
    for vm in params.objects("vms"):
        yield vm, params.object_params(vm)
