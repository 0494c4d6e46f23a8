"""The legacy API layer: existing tp-qemu-style multi-host tests (modules
importing `autotest.client.shared.*` and `virttest.*`) run unmodified on
this suite, with their cfg and params.

Switched on per client job (switch.py): `legacy_api = yes`, or by default
when the test module imports autotest/virttest.  Only then the private
directory `_shim/` (packages `autotest` and `virttest`, thin re-exports of
this package) goes first on sys.path: nothing named autotest or virttest is
installed, and a real avocado-vt stays `import virttest` everywhere else.

Every legacy call maps onto the suite's engine:

    migration.py       MultihostMigration (+Fd, Exec, Rdma), the legacy hooks
    migration_base.py  MigrationBase (capabilities, speed, stress, ping-pong)
    vm.py, monitor.py  vm.* and vm.monitor.* over the VM and its QMP link
    session.py         guest sessions over the serial console
    sync.py            SyncData, barriers, listen_server over the sync server
    error.py           autotest error: one vocabulary (verdicts.py)
    hostutils.py       autotest utils: run, sizes, hashes, threads, statistics
    env.py, misc.py    env/test objects, env_process, utils_misc, utils_test,
                       qemu_migration, data_dir
    unsupported.py     anything else: an error naming the call and the line

A capability the hosts or the guest lack (RDMA, a program in the guest,
autotest inside it, a guest network) is TEST_NA naming it.
"""
