"""What a legacy test needs of the guest that it cannot find out itself
before it is too late (a kdump test backs up /etc/kdump.conf first and
fails with ERROR where there is none), by its `type` or params; a guest
declares what it lacks in `guest_lacks` (cfg/legacy.cfg: the lab's tiny
guest), and a test needing one of those is TEST_NA before it starts, on
every host alike.  Everything else is found at run time: a guest program
missing (exit 127) is TEST_NA naming it (session.py)."""

from __future__ import annotations

from typing import Optional

from multihost_migration.params import Params

#: type -> the capability the test needs (and what it is, for the reason).
BY_TYPE = {
    "migration_multi_host_with_kdump": ("kdump", "kdump inside the guest (a crash kernel, "
                                                 "the kdump service, /var/crash)"),
}
#: param value -> capability: a background sub test that runs autotest in the guest.
BY_PARAM = {
    ("bg_stress_test", "autotest_control"): ("autotest", "autotest inside the guest (its "
                                                         "stress control file)"),
}


def missing(params: Params) -> Optional[str]:
    """The reason this test cannot run on this guest, or None."""
    lacks = set(params.get_list("guest_lacks", ""))
    needs = []
    if str(params.get("type", "")) in BY_TYPE:
        needs.append(BY_TYPE[str(params.get("type"))])
    for (key, value), need in BY_PARAM.items():
        if str(params.get(key, "")) == value:
            needs.append(need)
    for name, what in needs:
        if name in lacks:
            return (f"the test needs {what}; the guest lacks {name} "
                    f"(guest_lacks = {' '.join(sorted(lacks))})")
    return None
