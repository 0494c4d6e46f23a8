"""The reference's shipped cfg tree, assembled for the conformance tests."""

from __future__ import annotations

import os
import shutil
from typing import Sequence


def shared_cfg_dir() -> str:
    """virttest/shared/cfg of the installed reference."""
    import virttest
    return os.path.join(os.path.dirname(virttest.__file__), "shared", "cfg")


def _emit(directory: str, indent: int, out: list[str]) -> None:
    names = sorted(f[:-4] for f in os.listdir(directory) if f.endswith(".cfg"))
    for name in names:
        with open(os.path.join(directory, name + ".cfg"), encoding="utf-8") as fh:
            for line in fh.read().splitlines():
                out.append(" " * indent + line if line.strip() else "")
        sub = os.path.join(directory, name)
        if os.path.isdir(sub):
            out.append(" " * (indent + 4) + "variants:")
            _emit(sub, indent + 8, out)


def guest_os_cfg(src: str) -> str:
    """One guest-os.cfg from the guest-os/ tree: each X.cfg is an entry and
    the directory X/ beside it a nested variants block of that entry."""
    out = ["variants:"]
    _emit(os.path.join(src, "guest-os"), 4, out)
    return "\n".join(out) + "\n"


def shipped_tree(tmp: str, filters: Sequence[str],
                 parts: Sequence[str] = ("base.cfg", "machines.cfg",
                                         "guest-hw.cfg", "guest-os.cfg")) -> str:
    """Copy the shipped files into `tmp`, write a top file including
    `parts` followed by `filters`; return its path."""
    src = shared_cfg_dir()
    for name in os.listdir(src):
        if name.endswith(".cfg"):
            shutil.copy(os.path.join(src, name), tmp)
    with open(os.path.join(tmp, "guest-os.cfg"), "w", encoding="utf-8") as fh:
        fh.write(guest_os_cfg(src))
    top = os.path.join(tmp, "top.cfg")
    with open(top, "w", encoding="utf-8") as fh:
        fh.write("".join(f"include {p}\n" for p in parts))
        fh.write("".join(f"{f}\n" for f in filters))
    return top
