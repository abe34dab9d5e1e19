#!/usr/bin/env bash
# Installs vboxpy and what it needs on a Debian machine (idempotent).
#   scripts/install.sh          the package and its runtime dependencies
#   scripts/install.sh --test   also the test tools and Debian packages the tests use
#   scripts/install.sh --bench  also what the benchmarks compare with (libvirt's virsh and libvirtd)
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
need_apt=()
command -v dpkg-deb >/dev/null || need_apt+=(dpkg)
command -v cpio >/dev/null || need_apt+=(cpio)
# the guest builder's bootable media: FAT image tools, ISO writer, ext4 with -d
command -v mcopy >/dev/null || need_apt+=(mtools)
[ -x /usr/sbin/mkfs.fat ] || command -v mkfs.fat >/dev/null || need_apt+=(dosfstools)
command -v xorriso >/dev/null || need_apt+=(xorriso)
[ -x /usr/sbin/mke2fs ] || [ -x /sbin/mke2fs ] || command -v mke2fs >/dev/null || need_apt+=(e2fsprogs)
# the NAT attachment runs libslirp (through ctypes) in the VM process
ldconfig -p 2>/dev/null | grep -q 'libslirp\.so\.0' || need_apt+=(libslirp0)
# REM's unicorn is built from source with the project's patches (scripts/unicorn/build.py)
for tool in cmake make gcc patch; do command -v $tool >/dev/null || need_apt+=($tool); done
if [ "${1:-}" = "--bench" ]; then
    # tests/performance/bench_cli.py measures vboxmanage beside virsh, vboxsvc beside libvirtd
    command -v virsh >/dev/null || need_apt+=(libvirt-clients)
    [ -x /usr/sbin/libvirtd ] || need_apt+=(libvirt-daemon-system)
    command -v qemu-system-x86_64 >/dev/null || need_apt+=(qemu-system-x86)
fi
if [ "${1:-}" = "--test" ]; then
    command -v tcpdump >/dev/null || need_apt+=(tcpdump)     # reads the NIC trace files in the tests
    command -v qemu-img >/dev/null || need_apt+=(qemu-utils)
    # ISO images for the DVD drive tests (and an El Torito ISO with ISOLINUX), debugfs to read guest disks
    [ -f /usr/lib/ISOLINUX/isolinux.bin ] || need_apt+=(isolinux)
    [ -f /usr/lib/syslinux/modules/bios/ldlinux.c32 ] || need_apt+=(syslinux-common)
    command -v debugfs >/dev/null || need_apt+=(e2fsprogs)
    # the full Debian disk the tests boot
    command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
    command -v qemu-system-x86_64 >/dev/null || need_apt+=(qemu-system-x86)   # the boot benchmark's peer
    command -v vncsnapshot >/dev/null || need_apt+=(vncsnapshot)   # a real VNC client for the remote display tests
    # the real VirtualBox client the client tests drive unmodified (Debian 12: Vagrant 2.3.4)
    command -v vagrant >/dev/null || need_apt+=(vagrant)
    # and Packer's virtualbox-ovf builder (Debian 12: Packer 1.6.6)
    command -v packer >/dev/null || need_apt+=(packer)
fi
# the guest builder finds Debian's kernel, busybox, the boot loaders and Vagrant's key
# through the apt lists
lists_ok=1
apt-cache show --no-all-versions linux-image-amd64 busybox-static seabios syslinux syslinux-common \
    isolinux vagrant >/dev/null 2>&1 || lists_ok=0
if [ ${#need_apt[@]} -gt 0 ] || [ $lists_ok = 0 ]; then
    $SUDO apt-get update -q >/dev/null
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}" >/dev/null
fi

# make_venv DIR: a venv from Debian's /usr/bin/python3 with vboxpy's runtime dependencies (from
# pyproject.toml) that finds this checkout through a .pth file; readable by everyone.
make_venv() {
    local dir=$1 deps
    if ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
        [ -z "$SUDO" ] || command -v sudo >/dev/null || { echo "install.sh: python3-venv is missing" >&2; return 1; }
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -q python3-venv >/dev/null
    fi
    [ -x "$dir/bin/python3" ] || /usr/bin/python3 -m venv "$dir"
    # the dependencies but unicorn, which is our own build (below)
    deps=$(/usr/bin/python3 -c 'import tomllib; print("\n".join(d for d in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"] if not d.startswith("unicorn")))')
    # shellcheck disable=SC2086
    "$dir/bin/python3" -m pip install -q --disable-pip-version-check $deps
    "$dir/bin/python3" scripts/unicorn/build.py --install 2>&1 | grep -v 'Running pip as the'
    "$dir/bin/python3" -c 'import site, sys; print(sys.argv[1], file=open(site.getsitepackages()[0] + "/vboxpy-checkout.pth", "w"))' "$PWD"
    chmod -R a+rX "$dir"
}

have_deps() { "$1" -c 'import zmq, msgpack, click, pydantic, lxml, unicorn' >/dev/null 2>&1; }

# reachable_by_all PY: every folder on the way to the interpreter lets other users through
reachable_by_all() {
    "$1" -c '
import os, stat, sys
p = os.path.dirname(os.path.realpath(sys.executable))
while True:
    if not os.stat(p).st_mode & stat.S_IXOTH:
        sys.exit(1)
    if p == "/":
        break
    p = os.path.dirname(p)'
}

extra=""; [ "${1:-}" = "--test" ] && extra="[test]"
if [ "$(id -u)" = 0 ] || [ -n "${VIRTUAL_ENV:-}" ]; then
    python3 -m pip install -q --disable-pip-version-check -e ".${extra}" 2>&1 | grep -v 'Running pip as the' || true
    # Byte-compile once: start-up time of vboxmanage and vboxsvc matters, and an environment with
    # PYTHONDONTWRITEBYTECODE would otherwise recompile every module on every start.
    python3 -m compileall -q -j 0 settings vboxsvc frontends vmm >/dev/null || true
    # vboxmanage / VBoxManage as `python3 -IS` launchers instead of pip's console scripts: no site
    # initialisation (.pth files, the editable-install finder) on every run of the CLI
    python3 scripts/write_launchers.py >/dev/null
    # unicorn 2.1.4 with the project's patches, x86 only, as the wheel 2.1.4+vboxpy<N> (cached by
    # source and patch hashes; a failed build stops the install: REM must not run a stock wheel)
    python3 scripts/unicorn/build.py --install 2>&1 | grep -v 'Running pip as the'
fi
if [ "$(id -u)" = 0 ]; then
    # Ordinary users run vboxpy too: when they cannot reach this python3 (pyenv in a 0700 /root),
    # give them an interpreter of their own in a public place.
    reachable_by_all python3 || make_venv /opt/vboxpy/venv
elif ! have_deps python3 && ! have_deps /opt/vboxpy/venv/bin/python3; then
    make_venv "${XDG_DATA_HOME:-$HOME/.local/share}/vboxpy/venv"
fi
# The VM's firmware: Debian's SeaBIOS, downloaded and unpacked into .cache/firmware (no root needed)
python3 -m vmm.firmware
