"""The checkout's own helper package (a provider package, in the legacy
idiom, written for this suite's tests): it imports virttest itself."""
import os

from virttest import data_dir


def deps_dir():
    """The helper sources a test copies into the guest (deps/fixture_dep)."""
    path = data_dir.get_deps_dir("fixture_dep")
    assert os.path.isdir(path), path
    return path
