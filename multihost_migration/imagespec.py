"""The one image-spec rule: which disks a VM has and where their files are.

Pure parsing (no file, process or QMP access), so every layer may use it:
the controller's preflight, the storage code that creates and checks the
files, the QEMU command line.  Keys, per image `KEY_<image>` overriding
`KEY` (an empty value counts as unset):

    images           space-separated image names; when unset but
                     image_path or image_name is given: "image1"
    image_path       full path of the disk file, or
    image_name       path without extension, absolute or relative to
                     images_base_dir (default DEFAULT_IMAGES_DIR); the
                     format's extension is added unless the name has it
                     (none for raw)
    image_format     qcow2
    image_size       64M (for create_image)
    create_image     yes: this test creates (and removes) the file
    image_readonly   yes|no
    drive_cache      none
    drive_format     virtio

A missing image_name and image_path is a ConfigError (a configuration
mistake, whoever finds it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from multihost_migration.errors import ConfigError
from multihost_migration.params import parse_bool

#: Where images live on the shared storage unless `images_base_dir` says otherwise.
DEFAULT_IMAGES_DIR = "/var/lib/virt_test/images"
DEFAULT_IMAGE = "image1"


@dataclass(frozen=True)
class ImageSpec:
    """One disk of one VM, as the params describe it."""

    vm: str
    name: str
    path: Path
    fmt: str = "qcow2"
    size: str = "64M"
    create: bool = False
    readonly: bool = False
    cache: str = "none"
    drive_format: str = "virtio"


def images_dir(params: Mapping[str, Any]) -> str:
    """The images directory of the shared storage (`images_base_dir`)."""
    return str(params.get("images_base_dir") or DEFAULT_IMAGES_DIR)


def image_names(params: Mapping[str, Any]) -> list[str]:
    """The VM's image names (`images`, or "image1" for a lone image_path/image_name)."""
    value = params.get("images") or ""
    names = ([str(v) for v in value] if isinstance(value, (list, tuple))
             else str(value).split())
    if not names and (params.get("image_path") or params.get("image_name")):
        names = [DEFAULT_IMAGE]
    return names


def image_spec(vm: str, image: str, params: Mapping[str, Any]) -> ImageSpec:
    """`image` of `vm` from the VM's params (see the module docstring)."""
    def get(key: str, default: str = "") -> str:
        for name in (f"{key}_{image}", key):
            value = params.get(name)
            if value is not None and str(value) != "":
                return str(value)
        return default

    fmt = get("image_format", "qcow2")
    path = get("image_path")
    if not path:
        name = get("image_name")
        if not name:
            raise ConfigError(f"{vm}: image {image!r} has neither image_path nor image_name")
        full = Path(get("images_base_dir", DEFAULT_IMAGES_DIR)) / name
        if fmt != "raw" and full.suffix != f".{fmt}":
            full = full.with_name(f"{full.name}.{fmt}")
        path = str(full)
    return ImageSpec(vm=vm, name=image, path=Path(path), fmt=fmt,
                     size=get("image_size", "64M"),
                     create=parse_bool(get("create_image", "no"), f"{vm}: create_image"),
                     readonly=parse_bool(get("image_readonly", "no"),
                                         f"{vm}: image_readonly"),
                     cache=get("drive_cache", "none"),
                     drive_format=get("drive_format", "virtio"))


def image_specs(vm: str, params: Mapping[str, Any]) -> tuple[ImageSpec, ...]:
    """Every image of `vm`, from the VM's params."""
    return tuple(image_spec(vm, image, params) for image in image_names(params))
