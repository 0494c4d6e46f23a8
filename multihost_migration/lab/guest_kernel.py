"""The guest kernel image: the distro bzImage, or its PVH-bootable payload.

Under TCG most of the tiny guest's boot time goes into the kernel
decompressing itself and into real-mode setup.  A distro bzImage carries
the kernel proper as a compressed ELF ("vmlinux"); when that ELF has the
PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY, CONFIG_PVH=y), QEMU's `-kernel`
boots it directly, which roughly halves the boot time under TCG.  So the
builder extracts the payload when it can, and otherwise copies the bzImage.
"""

from __future__ import annotations

import logging
import lzma
import struct
from typing import Iterator, Optional, Tuple

log = logging.getLogger(__name__)

XZ_MAGIC = b"\xfd7zXZ\x00"
ELF_MAGIC = b"\x7fELF"
PT_NOTE = 4
XEN_ELFNOTE_PHYS32_ENTRY = 18


def _notes(elf: bytes) -> Iterator[Tuple[bytes, int]]:
    """(owner, type) of each note in an ELF64 little-endian file's PT_NOTEs."""
    if elf[:4] != ELF_MAGIC or elf[4] != 2 or elf[5] != 1:
        return
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for index in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + index * phentsize)
        if p_type != PT_NOTE:
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            yield name, ntype
            pos += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)


def has_pvh_entry(elf: bytes) -> bool:
    return any(name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY
               for name, ntype in _notes(elf))


def extract_pvh_vmlinux(bzimage: bytes) -> Optional[bytes]:
    """The xz-compressed ELF payload of a bzImage if it is PVH-bootable, else None."""
    start = bzimage.find(XZ_MAGIC)
    if start < 0:
        log.info("kernel payload is not xz-compressed; using the bzImage as is")
        return None
    try:
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(bzimage[start:])
    except lzma.LZMAError as err:
        log.info("cannot decompress the kernel payload (%s); using the bzImage", err)
        return None
    if not has_pvh_entry(elf):
        log.info("kernel payload has no PVH entry note; using the bzImage as is")
        return None
    return elf


def guest_kernel(bzimage: bytes) -> Tuple[bytes, str]:
    """(kernel file contents, "pvh-elf" or "bzimage")."""
    elf = extract_pvh_vmlinux(bzimage)
    if elf is None:
        return bzimage, "bzimage"
    return elf, "pvh-elf"
