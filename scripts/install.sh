#!/usr/bin/env bash
# Installs vboxpy and what it needs on a Debian machine (idempotent).
#   scripts/install.sh          the package and its runtime dependencies
#   scripts/install.sh --test   also the test tools and Debian packages the tests use
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
need_apt=()
command -v dpkg-deb >/dev/null || need_apt+=(dpkg)
command -v cpio >/dev/null || need_apt+=(cpio)
# REM's unicorn is built from source with the project's patches (scripts/unicorn/build.py)
for tool in cmake make gcc patch; do command -v $tool >/dev/null || need_apt+=($tool); done
if [ "${1:-}" = "--test" ]; then
    command -v qemu-img >/dev/null || need_apt+=(qemu-utils)
fi
# the guest builder finds Debian's kernel and busybox through the apt lists
lists_ok=1
apt-cache show --no-all-versions linux-image-amd64 busybox-static >/dev/null 2>&1 || lists_ok=0
if [ ${#need_apt[@]} -gt 0 ] || [ $lists_ok = 0 ]; then
    $SUDO apt-get update -q >/dev/null
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}" >/dev/null
fi
extra=""; [ "${1:-}" = "--test" ] && extra="[test]"
python3 -m pip install -q --disable-pip-version-check -e ".${extra}" 2>&1 | grep -v 'Running pip as the' || true
# unicorn 2.1.4 with the project's patches, x86 only, as the wheel 2.1.4+vboxpy<N> (cached by
# source and patch hashes; a failed build stops the install: REM must not run a stock wheel)
python3 scripts/unicorn/build.py --install 2>&1 | grep -v 'Running pip as the'
# Byte-compile once: start-up time of vboxmanage and vboxsvc matters, and an environment with
# PYTHONDONTWRITEBYTECODE would otherwise recompile every module on every start.
python3 -m compileall -q -j 0 settings vboxsvc frontends vmm >/dev/null
