#!/usr/bin/env bash
# The README's first command: install vboxpy, build the Debian guest, create a VM with the
# VBoxManage-compatible CLI, boot it headless on the software engine, talk to its serial
# console over TCP (`uname -a`), power it off and show the final state.
# Uses its own VirtualBox home (.cache/demo-home, wiped first): your ~/.config/VirtualBox
# is never touched.  Exits 0 only if every step worked.
#   DEMO_PORT=<tcp port> for the serial console (default: a free one)
#   DEMO_BOOT_TIMEOUT=<seconds> to wait for the guest's shell (default 600)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

step() { printf '\n==> %s\n' "$*"; }
show() { printf '$ vboxmanage'; printf ' %q' "$@"; echo; vbm "$@"; }   # print, then run, a vboxmanage command

step "Installing vboxpy (scripts/install.sh)"
./scripts/install.sh

step "Building the Debian guest (kernel + busybox initramfs, cached in .cache/guest)"
python3 -m vmm.guest.builder

export VBOX_USER_HOME="$ROOT/.cache/demo-home"
export VBOXPY_RUNTIME_DIR="$VBOX_USER_HOME/run"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
vbm() {
    if command -v vboxmanage >/dev/null; then vboxmanage "$@"; else python3 -m frontends.vboxmanage.main "$@"; fi
}

# A service left by an earlier demo run lives in the home we are about to wipe: stop it first.
for pidfile in "$VBOXPY_RUNTIME_DIR"/vboxsvc*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(awk '{print $1; exit}' "$pidfile")
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
done
rm -rf "$VBOX_USER_HOME"
mkdir -p "$VBOX_USER_HOME"

PORT=${DEMO_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
BOOT_TIMEOUT=${DEMO_BOOT_TIMEOUT:-600}
started=0
cleanup() {
    if [ "$started" = 1 ] && vbm showvminfo demo --machinereadable 2>/dev/null | grep -q '^VMState="running"'; then
        vbm controlvm demo poweroff >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

step "Creating the VM (VBOX_USER_HOME=$VBOX_USER_HOME)"
show setproperty machinefolder "$VBOX_USER_HOME/VirtualBox VMs"
show createvm --name demo --ostype Debian_64 --register
show modifyvm demo --memory 256 --boot-kernel .cache/guest/vmlinux --boot-initrd .cache/guest/initrd.img \
    --boot-cmdline "console=ttyS0 quiet" --uart1 0x3f8 4 --uart-mode1 tcpserver "$PORT"

step "Starting it headless (software engine)"
t0=$(date +%s.%N)
show startvm demo --type headless
started=1

step "Guest serial console on 127.0.0.1:$PORT"
python3 - "$PORT" "$BOOT_TIMEOUT" "$t0" <<'EOF'
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
echo
echo "demo: OK (VM log: $VBOX_USER_HOME/VirtualBox VMs/demo/Logs/VBox.log)"
