#!/bin/sh
# The judged set of issue #17: upstream tp-qemu multi-host tests, unmodified,
# from a local checkout (nothing is fetched), on the lab, under the lab lock.
#
#   MHM_TP_QEMU=/path/to/tp-qemu scripts/run_upstream_legacy.sh [RESULTS_DIR]
#
# The user cfg (multihost_migration/lab/legacy_run.py) includes cfg/legacy.cfg
# and the checkout's multi_host_migration/tests/cfg/multi_host.cfg as they
# are, sets scenario_dirs and the guest-side commands the tiny guest can run.
set -eu
: "${MHM_TP_QEMU:?set MHM_TP_QEMU to a tp-qemu checkout (multi_host_migration/, provider/)}"
cd "$(dirname "$0")/.."
out="${1:-/tmp/mhm-upstream-legacy}"
py=.venv/bin/python
run() {   # name, filters...
    name=$1; shift
    flock /tmp/mhm-lab.lock "$py" -m multihost_migration.lab.legacy_run \
        "$MHM_TP_QEMU" "$out/$name" "$@" | tee "$out/$name.verdicts" || true
}
mkdir -p "$out"
flock /tmp/mhm-lab.lock sh -c "$py -m multihost_migration.lab.cli lab up >/dev/null && \
    $py -m multihost_migration.lab.cli guest build >/dev/null"
# Several goes, each under the lock on its own (at most a few minutes each).
run migrate_multi_host "only migrate_multi_host" "only after_login_vm, early_boot_vm" \
    "only tcp, fd, exec"
run cancel_reboot "only tcp" "only cancel_with_delay, with_reboot"
run ping_pong_speed "only tcp" "only no_stress, measure_speed"
run not_available "only mig_online" \
    "only after_login_vm..rdma, ping-pong-kdump..tcp, with_stress..tcp, before_migrate..tcp, stress_load..tcp"
cat "$out"/*.verdicts
