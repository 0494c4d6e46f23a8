#!/usr/bin/env bash
# make demo: lab up (if needed), guest built (if needed), a real two-host
# migration with autotest-remote from the lab's controller, results printed.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m multihost_migration.lab.demo "$@"
