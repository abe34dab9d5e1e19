#!/usr/bin/env bash
# The README's first command: install vboxpy, build the Debian guest, create a VM with the
# VBoxManage-compatible CLI, boot it headless on the software engine, talk to its serial
# console over TCP (`uname -a`), power it off and show the final state.
# Runs with VirtualBox's defaults (no VBOX_USER_HOME) as the user who runs it, in a scratch HOME
# (wiped first; your own VirtualBox home is never touched): `.cache/demo` in the checkout, or
# ~/.cache/vboxpy/demo when the checkout is not yours. As root, VirtualBox takes the home from
# the account database, not from $HOME: the demo then runs in a private mount namespace with the
# scratch folder mounted over root's home. Works as root and as an ordinary user; exits 0 only if
# every step worked.
#   DEMO_PORT=<tcp port> for the serial console (default: a free one)
#   DEMO_BOOT_TIMEOUT=<seconds> to wait for the guest's shell (default 600)
#   DEMO_SKIP_INSTALL=1 to skip step 1 when vboxpy is installed already
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

step() { printf '\n==> %s\n' "$*"; }
show() { printf '$ vboxmanage'; printf ' %q' "$@"; echo; vbm "$@"; }   # print, then run, a vboxmanage command

if [ -z "${DEMO_IN_NAMESPACE:-}" ]; then
    if [ "${DEMO_SKIP_INSTALL:-}" != 1 ]; then
        step "Installing vboxpy (scripts/install.sh)"
        ./scripts/install.sh
    fi
    PY=$(./scripts/python.sh)
    step "Building the Debian guest (kernel + busybox initramfs; $PY)"
    if ! "$PY" -m vmm.guest.builder && [ -z "${VBOXPY_GUEST_CACHE:-}" ] && [ ! -w "$ROOT" ]; then
        export VBOXPY_GUEST_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/vboxpy/guest"
        echo "(the checkout is not writable: building into $VBOXPY_GUEST_CACHE)"
        "$PY" -m vmm.guest.builder
    fi
    if [ -w "$ROOT" ]; then DEMO="$ROOT/.cache/demo"; else DEMO="${XDG_CACHE_HOME:-$HOME/.cache}/vboxpy/demo"; fi
    # A service left by an earlier demo run lives in the folder we are about to wipe: stop it first.
    for pidfile in "$DEMO"/run/vboxpy/vboxsvc*.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(awk '{print $1; exit}' "$pidfile")
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    rm -rf "$DEMO"
    mkdir -p "$DEMO/home" "$DEMO/run"
    chmod 700 "$DEMO/run"
    export PY DEMO
    if [ "$(id -u)" = 0 ]; then
        step "Root: VirtualBox's home is root's account home; using a private mount namespace over it"
        exec unshare -m --propagation private env DEMO_IN_NAMESPACE=1 "$ROOT/scripts/demo.sh" "$@"
    fi
else
    # inside the namespace (root): the scratch folder over root's home, with whatever of that home
    # the demo needs (the interpreter, the checkout) bound back inside
    account_home=$(getent passwd 0 | cut -d: -f6)
    mkdir -p "$DEMO/roothome"
    for need in "$(readlink -f "$PY")" "$ROOT"; do
        case "$need" in
            "$account_home"/*)
                top="${need#"$account_home"/}"; top="${top%%/*}"
                mkdir -p "$DEMO/roothome/$top"
                mount --rbind "$account_home/$top" "$DEMO/roothome/$top" ;;
        esac
    done
    mount --rbind "$DEMO/roothome" "$account_home"
fi

# VirtualBox's defaults: no VBOX_USER_HOME, no XDG_CONFIG_HOME; a scratch HOME; the bus in a
# runtime folder of the demo's own (so it never meets a service of your real home)
unset VBOX_USER_HOME XDG_CONFIG_HOME VBOXPY_RUNTIME_DIR VBOX_USER_LOGHOME
export HOME="$DEMO/home" XDG_RUNTIME_DIR="$DEMO/run"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
GUEST="${VBOXPY_GUEST_CACHE:-$ROOT/.cache/guest}"
vbm() { "$PY" -m frontends.vboxmanage.main "$@"; }

PORT=${DEMO_PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
BOOT_TIMEOUT=${DEMO_BOOT_TIMEOUT:-600}
started=0
cleanup() {
    if [ "$started" = 1 ] && vbm showvminfo demo --machinereadable 2>/dev/null | grep -q '^VMState="running"'; then
        vbm controlvm demo poweroff >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

step "Creating the VM as $(id -un), HOME=$HOME, VirtualBox's default home"
show createvm --name demo --ostype Debian_64 --register
show modifyvm demo --memory 256 --boot-kernel "$GUEST/vmlinux" --boot-initrd "$GUEST/initrd.img" \
    --boot-cmdline "console=ttyS0 quiet" --uart1 0x3f8 4 --uart-mode1 tcpserver "$PORT"
cfg=$(vbm showvminfo demo --machinereadable | sed -n 's/^CfgFile="\(.*\)"$/\1/p')
echo "(settings: $cfg)"

step "Starting it headless (software engine)"
t0=$(date +%s.%N)
show startvm demo --type headless
started=1

step "Guest serial console on 127.0.0.1:$PORT"
"$PY" - "$PORT" "$BOOT_TIMEOUT" "$t0" <<'EOF'
import socket
import sys
import time

port, timeout, t0 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
while True:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(f"demo: cannot connect to the serial port {port}")
        time.sleep(0.1)
buf = b""


def read_until(needle: bytes, until: float, poke: bytes = b"") -> bool:
    """Read the console until `needle` shows up; `poke` is typed every few seconds meanwhile."""
    global buf
    next_poke = time.monotonic() + 5
    while needle not in buf:
        now = time.monotonic()
        if now > until:
            return False
        if poke and now > next_poke:
            sock.sendall(poke)
            next_poke = now + 5
        sock.settimeout(max(0.1, min(1.0, until - now)))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            sys.exit("demo: the serial connection closed")
        buf += chunk
    return True


# The marker may have gone by before we connected: ask the shell to echo it again meanwhile
# (split quotes keep the echoed command line itself from matching).
if not read_until(b"VBOXPY-GUEST-READY", deadline, poke=b"echo VBOXPY-GUEST''-READY\r"):
    sys.exit(f"demo: no ready marker within {timeout:.0f} s; console said:\n{buf[-1500:].decode(errors='replace')}")
print(f"guest ready {time.time() - t0:.1f} s after startvm")
buf = b""
sock.sendall(b"echo __BE''GIN__; uname -a; echo __E''ND__\r")
if not read_until(b"__END__", time.monotonic() + 120):
    sys.exit(f"demo: no answer to uname -a; console said:\n{buf[-1500:].decode(errors='replace')}")
answer = buf.split(b"__BEGIN__", 1)[1].split(b"__END__", 1)[0].decode(errors="replace").strip()
print("guest$ uname -a")
print(answer)
if not answer.startswith("Linux"):
    sys.exit("demo: unexpected answer from the guest")
sock.close()
EOF

step "Powering it off"
show controlvm demo poweroff
echo '$ vboxmanage showvminfo demo --machinereadable | grep VMState='
state=$(vbm showvminfo demo --machinereadable | grep '^VMState=')
echo "$state"
[ "$state" = 'VMState="poweroff"' ] || { echo "demo: the VM did not end powered off" >&2; exit 1; }
started=0
log="$(dirname "$cfg")/Logs/VBox.log"
if [ -n "${DEMO_IN_NAMESPACE:-}" ]; then
    log="$DEMO/roothome/${log#"$account_home"/}"   # where it stays once the namespace is gone
fi
echo
echo "demo: OK (VM log: $log)"
