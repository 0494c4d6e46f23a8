"""A legacy sub test (run by utils_test.run_virt_sub_test)."""
from autotest.client.shared import error


def run(test, params, env):
    vm = env.get_vm(params["main_vm"])
    session = vm.wait_for_login(timeout=int(params.get("login_timeout", 120)))
    if session.cmd_output("echo sub-test-ok").strip() != "sub-test-ok":
        raise error.TestFail("sub test: no echo")
    session.close()
