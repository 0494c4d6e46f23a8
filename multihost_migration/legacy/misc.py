"""virttest helpers legacy tests call: utils_misc (wait_for, ports, random
strings), utils_test (run_virt_sub_test, get_time, run_autotest),
qemu_migration (set_downtime, set_speed) and data_dir."""

from __future__ import annotations

import logging
import random
import re
import socket
import string
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

from multihost_migration.legacy import context
from multihost_migration.legacy.unsupported import unsupported
from multihost_migration.verdicts import TestNAError

log = logging.getLogger(__name__)


def wait_for(func: Callable[[], Any], timeout: float, first: float = 0.0,
             step: float = 1.0, text: Optional[str] = None) -> Any:
    """func() until it returns something true (returned) or `timeout`
    passes (None).  A verdict a background thread raised ends it at once."""
    ctx = context.current("utils_misc.wait_for")
    deadline = time.monotonic() + float(timeout)
    time.sleep(float(first))
    while True:
        ctx.raise_pending()
        if text:
            log.debug("%s", text)
        output = func()
        if output:
            return output
        if time.monotonic() >= deadline:
            return None
        time.sleep(float(step))


def find_free_port(start_port: int = 1024, end_port: int = 65535,
                   address: str = "localhost", sequent: bool = False) -> int:
    """The first port in [start_port, end_port) nothing listens on here."""
    for port in range(int(start_port), int(end_port)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("" if address == "localhost" else address, port))
            except OSError:
                continue
            return port
    raise unsupported(f"utils_misc.find_free_port({start_port}, {end_port})",
                      "no free port in the range")


def generate_random_string(length: int, ignore_str: str = string.punctuation,
                           convert_str: str = "") -> str:
    chars = "".join(c for c in string.ascii_letters + string.digits + string.punctuation
                    if c not in ignore_str)
    out = "".join(random.choice(chars) for _ in range(int(length)))
    for c in convert_str:
        out = out.replace(c, "\\" + c)
    return out


def get_time(session: Any, time_command: str, time_filter_re: str,
             time_format: str) -> tuple[float, float]:
    """(host time, guest time) in seconds since the epoch."""
    host = time.time()
    output = session.cmd_output(time_command)
    found = re.findall(time_filter_re, output)
    if not found:
        raise TestNAError(f"guest time: {time_filter_re!r} matches nothing in the output "
                          f"of {time_command!r}: {output.strip()[-200:]}")
    text = found[0] if isinstance(found[0], str) else " ".join(found[0])
    try:
        guest = datetime.strptime(text, time_format).timestamp()
    except ValueError:
        guest = float(text)
    return host, guest


def run_autotest(vm: Any, session: Any, control_path: str, *args: Any, **kwargs: Any) -> None:
    raise TestNAError(f"the test runs autotest inside the guest ({Path(control_path).name}): "
                      "the guest has no autotest client")


def run_virt_sub_test(test: Any, params: Any, env: Any, sub_type: Optional[str] = None,
                      tag: Optional[str] = None) -> None:
    """Run the legacy test module `sub_type` (looked up as the test is)."""
    from multihost_migration.legacy import switch as legacy_switch
    if not sub_type:
        raise unsupported("utils_test.run_virt_sub_test()", "no sub_type")
    path = legacy_switch.locate(sub_type, context.current("run_virt_sub_test").search)
    if path is None:
        raise unsupported(f"utils_test.run_virt_sub_test({sub_type!r})",
                          f"no {sub_type}.py in the test directories")
    legacy_switch.load(path).run(test, params, env)


def set_speed(vm: Any, value: Any) -> None:
    vm.monitor.migrate_set_speed(value)


def set_downtime(vm: Any, value: Any) -> None:
    vm.monitor.migrate_set_downtime(value)


def _roots() -> list[Path]:
    try:
        return [p for p in context.current().search if p.is_dir()]
    except Exception:
        return []


def get_root_dir() -> str:
    roots = _roots()
    return str(roots[0]) if roots else tempfile.gettempdir()


def get_data_dir() -> str:
    return get_root_dir()


def get_tmp_dir(public: bool = True) -> str:
    return tempfile.gettempdir()


def get_deps_dir(target: Optional[str] = None) -> str:
    """`deps/<target>` of the test checkout (its first match)."""
    for root in _roots():
        for deps in [root / "deps", *sorted(root.glob("*/deps"))]:
            candidate = deps / target if target else deps
            if candidate.exists():
                return str(candidate)
    return str(Path(get_root_dir()) / "deps" / (target or ""))
