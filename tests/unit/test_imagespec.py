"""The one image-spec rule (imagespec.py) and the one yes/no rule (params.parse_bool)."""

from __future__ import annotations

from pathlib import Path

import pytest

from multihost_migration.errors import ConfigError
from multihost_migration.imagespec import (DEFAULT_IMAGES_DIR, image_names, image_spec,
                                           image_specs, images_dir)
from multihost_migration.params import Params, parse_bool
from multihost_migration.qemu.config import VMConfig


def test_name_gets_the_format_extension_in_the_images_dir() -> None:
    spec = image_spec("vm1", "image1", {"image_name": "jeos"})
    assert spec.path == Path(DEFAULT_IMAGES_DIR) / "jeos.qcow2"
    assert (spec.fmt, spec.size, spec.create, spec.readonly) == ("qcow2", "64M", False, False)
    assert image_spec("vm1", "d", {"image_name": "x.qcow2"}).path.name == "x.qcow2"
    assert image_spec("vm1", "d", {"image_name": "x", "image_format": "raw"}).path.name == "x"
    assert image_spec("vm1", "d", {"image_name": "/abs/x"}).path == Path("/abs/x.qcow2")


def test_per_image_values_override_and_empty_counts_as_unset() -> None:
    params = {"image_name": "base", "image_name_disk2": "other", "images_base_dir": "/s",
              "create_image_disk2": "yes", "image_size": "", "image_path_disk3": "/p/f.img"}
    assert image_spec("vm1", "image1", params).path == Path("/s/base.qcow2")
    disk2 = image_spec("vm1", "disk2", params)
    assert disk2.path == Path("/s/other.qcow2") and disk2.create and disk2.size == "64M"
    assert image_spec("vm1", "disk3", params).path == Path("/p/f.img")


def test_a_lone_image_defaults_to_image1_everywhere() -> None:
    """The rule the storage code, the VM's command line and preflight share
    (storage used to ignore such an image)."""
    params = {"image_name": "jeos"}
    assert image_names(params) == ["image1"]
    assert [s.name for s in image_specs("vm1", params)] == ["image1"]
    assert [d.name for d in VMConfig.from_params("vm1", params).disks] == ["image1"]
    assert image_names({}) == [] and image_names({"images": ["a", "b"]}) == ["a", "b"]


def test_an_image_without_name_or_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="vm1: image 'image1' has neither image_path nor "
                                          "image_name"):
        image_specs("vm1", {"images": "image1"})


def test_images_dir() -> None:
    assert images_dir({}) == DEFAULT_IMAGES_DIR
    assert images_dir({"images_base_dir": "/shared"}) == "/shared"


@pytest.mark.parametrize("text, value", [
    ("yes", True), ("Y", True), ("true", True), ("On", True), ("1", True), (True, True),
    ("no", False), ("n", False), ("FALSE", False), ("off", False), ("0", False), ("", False),
    (" yes ", True), (False, False)])
def test_parse_bool(text: object, value: bool) -> None:
    assert parse_bool(text, "x") is value


def test_parse_bool_names_the_value() -> None:
    with pytest.raises(ConfigError, match=r"vm1: create_image='maybe': expected yes or no"):
        image_spec("vm1", "image1", {"image_name": "a", "create_image": "maybe"})
    with pytest.raises(ConfigError, match="'heartbeat'"):
        Params({"heartbeat": "sometimes"}).get_bool("heartbeat")
