#!/usr/bin/env bash
# Installs everything multihost_migration needs on a bare Debian 12 machine:
# the system packages (QEMU, sshd, busybox, a distro kernel, nftables, gcc...)
# and the Python package in editable mode, in .venv, with its dependencies.
# Idempotent: a second run checks, finds everything there, and exits in ~1 s.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(
  qemu-system-x86 qemu-utils          # the hypervisor and qemu-img
  openssh-server openssh-client       # one sshd per lab host
  busybox-static cpio xz-utils kmod   # the tiny guest's initramfs
  linux-image-amd64                   # the guest kernel (distro build)
  gcc libc6-dev                       # static guest helpers (libc6-dev has libc.a)
  nftables iproute2 procps psmisc     # lab network, fault injection, process control
  socat                               # serial console bridge for aexpect
  python3-venv
  chromium chromium-driver fonts-dejavu-core   # report.html rendered headless in tests
)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  [[ $p == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Keep package scripts from starting services (sshd) in the root namespace.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1
  fi
  trap '[[ $created_policy == 1 ]] && rm -f "$policy"' EXIT
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.mhm-installed
want=$(cat pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "setup: installing the Python package (editable) and its dependencies"
  .venv/bin/python -m pip install -q --upgrade pip setuptools
  .venv/bin/python -m pip install -q -e '.[test]'
  echo "$want" >"$stamp"
fi
echo "setup: ok"
