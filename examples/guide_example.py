"""The user guide's example scenario ("Writing Multi Host Migration tests"),
as printed there but for two lines:

- the import: `from multihost_migration import virt_utils`;
- the guide's `super(testMultihostMigration, self)` names the class with a
  lower-case t, a NameError in any Python; it is spelled right here.

The guide stops at "# Wait for mig2 finish."; the two joins after it are the
evident intent.  Select it with `type = guide_example` and
`scenario_dirs = <this directory>` (see cfg/subtests.cfg).
"""

from multihost_migration import virt_utils


def run(test, params, env):
    class TestMultihostMigration(virt_utils.MultihostMigration):
        def __init__(self, test, params, env):
            super(TestMultihostMigration, self).__init__(test, params, env)

        def migration_scenario(self):
            srchost = self.params.get("hosts")[0]
            dsthost = self.params.get("hosts")[1]

            def worker(mig_data):
                vm = env.get_vm("vm1")
                session = vm.wait_for_login(timeout=self.login_timeout)
                session.sendline("nohup dd if=/dev/zero of=/dev/null &")
                session.cmd("killall -0 dd")

            def check_worker(mig_data):
                vm = env.get_vm("vm1")
                session = vm.wait_for_login(timeout=self.login_timeout)
                session.cmd("killall -9 dd")

            # Almost synchronized migration, waiting to end it.
            # Work is started only on first VM.

            self.migrate_wait(["vm1", "vm2"], srchost, dsthost,
                              worker, check_worker)

            # Migration started in different threads.
            # It allows to start multiple migrations simultaneously.

            # Starts one migration without synchronization with work.
            mig1 = self.migrate(["vm1"], srchost, dsthost,
                                worker, check_worker)

            # Starts another test simultaneously.
            mig2 = self.migrate(["vm2"], srchost, dsthost)
            # Wait for mig2 finish.
            mig2.join()
            mig1.join()

    mig = TestMultihostMigration(test, params, env)
    # Start test.
    mig.run()
