"""The tiny guest's initramfs: its file tree and a reproducible cpio writer.

The archive is written in the kernel's "newc" cpio format directly from
Python so that it is byte-for-byte reproducible without root: entries sorted
by path, mtime 0, uid/gid 0, inode numbers assigned in order, and gzip with
mtime 0.  Device nodes (``/dev/console``) need no privileges this way.
"""

from __future__ import annotations

import gzip
import stat
from dataclasses import dataclass
from typing import Dict, Iterable, Mapping, Tuple

#: Scripts and configuration files of the guest.  They are hashed into the
#: build inputs, so editing one triggers a rebuild.
INIT_SCRIPT = """\
#!/bin/sh
# mhm tiny guest: early setup, then busybox init (PID 1 stays PID 1).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs tmpfs /tmp
dmesg -n 1
while read -r module; do
    insmod "/lib/modules/$module" || echo "mhm-guest: insmod $module failed"
done < /etc/mhm-modules
hostname mhm-guest
# The guest network (a NIC and mhm.ip=ADDR/PREFIX on the kernel command
# line): eth0 addressed at boot, the echo service and telnetd started.
net=$(sed -n 's/.*mhm\\.ip=\\([0-9./]*\\).*/\\1/p' /proc/cmdline)
if [ -n "$net" ]; then
    ip link set lo up
    if ip addr add "$net" dev eth0 && ip link set eth0 up; then
        echo "::respawn:/usr/bin/mhm-netecho 7" >> /etc/inittab
        echo "::respawn:/usr/sbin/telnetd -F -l /bin/login" >> /etc/inittab
    else
        echo "mhm-guest: network $net not configured"
    fi
fi
exec /sbin/init
"""

INITTAB = """\
ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/sync
"""

# busybox ash's line editor writes a cursor-position query (ESC [6n) right
# after every prompt; nobody answers it, and the prompt regex tolerates it.
# (Turning the editor off with `stty -echo` is worse: ash then exits on the
# EINTR a finishing background job causes.)  A wide terminal keeps the editor
# from wrapping long command lines with escape sequences.
PROFILE = """\
export PATH=/usr/bin:/bin:/usr/sbin:/sbin
export HOME=/root
export TERM=vt100
export PS1='mhm-guest# '
dmesg -n 1 2>/dev/null
case "$-" in *i*) stty cols 1024 rows 48 2>/dev/null ;; esac
"""

PASSWD = "root:x:0:0:root:/root:/bin/sh\n"
GROUP = "root:x:0:\n"
SHADOW_TEMPLATE = "root:{hash}:19000:0:99999:7:::\n"

TEMPLATES: Mapping[str, str] = {
    "init": INIT_SCRIPT,
    "etc/inittab": INITTAB,
    "etc/profile": PROFILE,
    "etc/passwd": PASSWD,
    "etc/group": GROUP,
    "etc/shadow": SHADOW_TEMPLATE,
}

DIRECTORIES = ("bin", "dev", "etc", "lib", "lib/modules", "proc", "root", "run",
               "sbin", "sys", "tmp", "usr", "usr/bin", "usr/sbin", "var")


@dataclass(frozen=True)
class Entry:
    """One archive member: a regular file, directory, symlink or device."""

    mode: int                 # full st_mode, type bits included
    data: bytes = b""         # file contents, or the symlink target
    rdev: Tuple[int, int] = (0, 0)

    @classmethod
    def file(cls, data: bytes, perm: int = 0o644) -> "Entry":
        return cls(stat.S_IFREG | perm, data)

    @classmethod
    def directory(cls, perm: int = 0o755) -> "Entry":
        return cls(stat.S_IFDIR | perm)

    @classmethod
    def symlink(cls, target: str) -> "Entry":
        return cls(stat.S_IFLNK | 0o777, target.encode())

    @classmethod
    def chardev(cls, major: int, minor: int, perm: int = 0o600) -> "Entry":
        return cls(stat.S_IFCHR | perm, b"", (major, minor))


def _pad4(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _newc_member(ino: int, name: str, entry: Entry) -> bytes:
    raw_name = name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (ino, entry.mode, 0, 0, nlink, 0, len(entry.data), 0, 0,
              entry.rdev[0], entry.rdev[1], len(raw_name), 0)
    header = b"070701" + b"".join(b"%08X" % value for value in fields)
    head = header + raw_name
    return head + _pad4(len(head)) + entry.data + _pad4(len(entry.data))


def write_cpio(entries: Mapping[str, Entry]) -> bytes:
    """A newc archive of `entries` (paths relative, no leading slash), sorted."""
    parts = [_newc_member(ino, name, entries[name])
             for ino, name in enumerate(sorted(entries), start=1)]
    parts.append(_newc_member(0, "TRAILER!!!", Entry(0)))
    return b"".join(parts)


def gzip_reproducible(data: bytes) -> bytes:
    """gzip without a timestamp or file name, so equal input gives equal output."""
    return gzip.compress(data, compresslevel=6, mtime=0)


def busybox_links(applet_paths: Iterable[str]) -> Dict[str, Entry]:
    """Symlinks to /bin/busybox for each applet path from `busybox --list-full`."""
    links: Dict[str, Entry] = {}
    for path in applet_paths:
        path = path.strip().lstrip("/")
        if path and path != "bin/busybox":
            links[path] = Entry.symlink("/bin/busybox")
    return links


def guest_tree(busybox: bytes, applet_paths: Iterable[str], password_hash: str,
               modules: Mapping[str, bytes], helpers: Mapping[str, bytes]) -> Dict[str, Entry]:
    """Every file of the initramfs.

    `modules` maps a flat module file name ("virtio.ko") to its uncompressed
    contents, in load order; `helpers` maps a helper name to its binary.
    """
    tree: Dict[str, Entry] = {d: Entry.directory() for d in DIRECTORIES}
    tree["root"] = Entry.directory(0o700)
    tree["tmp"] = Entry.directory(0o1777)
    tree["dev/console"] = Entry.chardev(5, 1)
    tree.update(busybox_links(applet_paths))
    tree["bin/busybox"] = Entry.file(busybox, 0o755)
    tree["init"] = Entry.file(INIT_SCRIPT.encode(), 0o755)
    for name in ("etc/inittab", "etc/profile", "etc/passwd", "etc/group"):
        tree[name] = Entry.file(TEMPLATES[name].encode())
    tree["etc/shadow"] = Entry.file(SHADOW_TEMPLATE.format(hash=password_hash).encode(), 0o600)
    tree["etc/mhm-modules"] = Entry.file("".join(f"{m}\n" for m in modules).encode())
    for name, data in modules.items():
        tree[f"lib/modules/{name}"] = Entry.file(data)
    for name, data in helpers.items():
        tree[f"usr/bin/{name}"] = Entry.file(data, 0o755)
    return tree
