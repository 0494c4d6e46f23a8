#!/usr/bin/env bash
# Installs everything multihost_migration needs on a bare Debian 12 machine:
# the system packages (QEMU, sshd, busybox, a distro kernel, nftables, gcc...)
# QEMU 10.0 beside the system 7.2 (its own prefix, /opt/mhm/qemu-10.0), and
# the Python package in editable mode, in .venv, with its dependencies.
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

# QEMU 10.0 from bookworm-backports, beside the system's 7.2, in its own
# prefix with its own firmware and data files: the .debs are downloaded with
# a private apt configuration (its own sources list and state, nothing added
# to /etc/apt) and unpacked with dpkg -x; nothing is installed into the system.
QEMU10_VERSION=10.0
QEMU10_PREFIX=${MHM_QEMU10_PREFIX:-/opt/mhm/qemu-$QEMU10_VERSION}
QEMU10_DEBS=(qemu-system-x86 qemu-system-common qemu-system-data
             qemu-system-modules-opengl qemu-system-modules-spice
             qemu-utils seabios)
qemu10_mirror() {   # the Debian mirror this machine's apt already uses
  local uri
  uri=$(grep -hs -E '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
          /etc/apt/sources.list.d/*.list | grep -v security | grep -o 'https\?://[^ ]*' \
        | grep -m1 '/debian/\?$' || true)
  echo "${uri:-http://deb.debian.org/debian}"
}
install_qemu10() {
  local work=$QEMU10_PREFIX.tmp root apt_opts mirror
  rm -rf "$work"; mkdir -p "$work"/{apt/etc/parts,apt/state/lists/partial,apt/cache/archives/partial,debs}
  mirror=$(qemu10_mirror)
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  printf 'deb [signed-by=%s] %s bookworm main\ndeb [signed-by=%s] %s bookworm-backports main\n' \
    "$keyring" "$mirror" "$keyring" "$mirror" >"$work/apt/etc/sources.list"
  apt_opts=(-q -o "Dir::Etc::SourceList=$work/apt/etc/sources.list"
            -o "Dir::Etc::SourceParts=$work/apt/etc/parts" -o "Dir::State=$work/apt/state"
            -o "Dir::Cache=$work/apt/cache" -o "Dir::State::status=/var/lib/dpkg/status"
            -o "APT::Sandbox::User=root")
  echo "setup: QEMU $QEMU10_VERSION: downloading from $mirror bookworm-backports into $QEMU10_PREFIX"
  apt-get "${apt_opts[@]}" update >/dev/null
  (cd "$work/debs" && apt-get "${apt_opts[@]}" download \
     $(printf '%s/bookworm-backports ' "${QEMU10_DEBS[@]}") ipxe-qemu >/dev/null)
  root=$work/root
  for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$root"; done
  # Libraries the binary needs that bookworm lacks here: unpacked into the prefix.
  local missing_libs
  missing_libs=$(ldd "$root/usr/bin/qemu-system-x86_64" "$root/usr/bin/qemu-img" \
                 | awk '/not found/ {print $1}' | sort -u)
  if [[ -n $missing_libs ]]; then
    local pkgs=() lib
    for lib in $missing_libs; do
      pkgs+=("$(apt-cache "${apt_opts[@]}" search --names-only "^${lib%%.so*}[0-9.-]*$" \
                | awk 'NR==1 {print $1}')")
    done
    [[ ${#pkgs[@]} -gt 0 && -n ${pkgs[0]} ]] || {
      echo "setup: QEMU $QEMU10_VERSION needs $missing_libs: no package found" >&2; exit 1; }
    echo "setup: QEMU $QEMU10_VERSION: libraries missing ($missing_libs): unpacking ${pkgs[*]}"
    (cd "$work/debs" && apt-get "${apt_opts[@]}" download "${pkgs[@]}" >/dev/null)
    for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$root"; done
  fi
  # One data directory (-L): QEMU's data files, keymaps, SeaBIOS and iPXE ROMs.
  mkdir -p "$work/bin" "$work/share/qemu" "$work/lib"
  cp -a "$root"/usr/share/qemu/. "$root"/usr/share/seabios/. "$root"/usr/lib/ipxe/qemu/. \
    "$work/share/qemu/"
  ln -s ../root/usr/lib/x86_64-linux-gnu/qemu "$work/lib/qemu"
  local tool extra libs=""
  [[ -n $missing_libs ]] && libs="$QEMU10_PREFIX/root/usr/lib/x86_64-linux-gnu:$QEMU10_PREFIX/root/lib/x86_64-linux-gnu"
  # Debian builds QEMU without relocation: the binaries look for data and
  # modules under /usr.  The wrappers point them at this prefix, for them only.
  for tool in qemu-system-x86_64 qemu-img qemu-nbd qemu-io; do
    extra=""
    [[ $tool == qemu-system-x86_64 ]] && extra=" -L $QEMU10_PREFIX/share/qemu"
    {
      echo '#!/bin/sh'
      echo "# QEMU $QEMU10_VERSION (bookworm-backports) with its own data files and modules"
      echo "export QEMU_MODULE_DIR=$QEMU10_PREFIX/lib/qemu"
      [[ -n $libs ]] && echo "export LD_LIBRARY_PATH=$libs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
      echo "exec $QEMU10_PREFIX/root/usr/bin/$tool$extra \"\$@\""
    } >"$work/bin/$tool"
    chmod 755 "$work/bin/$tool"
  done
  rm -rf "$work/apt" "$work/debs"
  rm -rf "$QEMU10_PREFIX"; mv "$work" "$QEMU10_PREFIX"
  local version
  version=$("$QEMU10_PREFIX/bin/qemu-system-x86_64" --version | head -1)
  [[ $version == *"version $QEMU10_VERSION"* ]] || {
    echo "setup: QEMU $QEMU10_VERSION in $QEMU10_PREFIX does not run: $version" >&2; exit 1; }
  echo "$version" >"$QEMU10_PREFIX/.mhm-installed"
  echo "setup: $version in $QEMU10_PREFIX ($(du -sh "$QEMU10_PREFIX" | cut -f1))"
}
if [[ ! -f $QEMU10_PREFIX/.mhm-installed ]] || \
   ! "$QEMU10_PREFIX/bin/qemu-system-x86_64" --version >/dev/null 2>&1; then
  install_qemu10
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
