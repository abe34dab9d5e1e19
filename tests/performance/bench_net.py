"""Network throughput and latency through a NAT port forward: our VMM (REM) vs QEMU TCG.

Both VMs boot the project's Debian guest with the same NIC model (e1000 = 82540EM, or
virtio-net) on user-mode NAT with host port forwards (ours: VirtualBox's NAT on libslirp;
QEMU: `-netdev user,hostfwd=...`, also libslirp).  The guest takes its address by DHCP, then:
- host -> guest: the host sends N MB into a forwarded port where the guest runs `nc -l | wc -c`;
- guest -> host: the host reads N MB from a forwarded port where the guest runs
  `dd if=/dev/zero | nc -l`;
- request latency: HTTP/1.0 requests to busybox httpd in the guest (connect, request, answer,
  close), the median of several.
Times are taken on the host.

    python tests/performance/bench_net.py [--mb 200] [--nics e1000,virtio] [--only qemu|ours]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import socket
import statistics
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.integration.vm.guest_console import READY_MARKER, GuestConsole  # noqa: E402

GUEST = pathlib.Path(os.environ.get("VBOXPY_GUEST_CACHE") or ROOT / ".cache" / "guest")
APPEND = "console=ttyS0 quiet"
QEMU_NIC = {"e1000": "e1000", "virtio": "virtio-net-pci"}
GUEST_PORTS = (5001, 5002, 5003)
CHUNK = 1 << 16


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def qemu_argv(nic: str, ports: list[int], memory: int) -> list[str]:
    fwd = ",".join(f"hostfwd=tcp:127.0.0.1:{h}-:{g}" for h, g in zip(ports, GUEST_PORTS, strict=True))
    return ["qemu-system-x86_64", "-accel", "tcg", "-m", str(memory), "-nographic", "-no-reboot",
            "-kernel", str(GUEST / "vmlinux"), "-initrd", str(GUEST / "initrd.img"), "-append", APPEND,
            "-netdev", f"user,id=n0,{fwd}", "-device", f"{QEMU_NIC[nic]},netdev=n0"]


def ours_argv(nic: str, ports: list[int], memory: int) -> list[str]:
    fwd = ",".join(f"{h}={g}" for h, g in zip(ports, GUEST_PORTS, strict=True))
    return [sys.executable, "-m", "vmm.run", "--kernel", str(GUEST / "vmlinux"), "--initrd",
            str(GUEST / "initrd.img"), "--append", APPEND, "--memory", str(memory), "--engine", "rem",
            "--ioapic", "on", "--nic", f"{nic}:nat:{fwd}"]     # local APIC + IO-APIC, as QEMU's pc


def guest(console: GuestConsole, command: str, timeout: float = 300) -> str:
    status, out = console.run(command, timeout)
    if status != 0:
        raise RuntimeError(f"guest command failed ({status}): {command}\n{out}")
    return out


def connect(port: int, timeout: float = 30) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def host_to_guest(console: GuestConsole, port: int, nbytes: int) -> float:
    result: dict = {}

    def send() -> None:
        time.sleep(3.0)                       # let the guest's nc listen (a refused forward closes at once)
        s = connect(port)
        block = b"\x5a" * CHUNK
        t0 = time.monotonic()
        left = nbytes
        while left > 0:
            n = min(left, CHUNK)
            s.sendall(block[:n])
            left -= n
        s.shutdown(socket.SHUT_WR)
        result["t0"] = t0
        s.settimeout(600)
        try:
            s.recv(1)
        except OSError:
            pass
        s.close()
    t = threading.Thread(target=send, daemon=True)
    t.start()
    out = guest(console, f"nc -l -p {GUEST_PORTS[0]} | wc -c", timeout=1800)
    elapsed = time.monotonic() - result["t0"]
    t.join(5)
    got = int(out.split()[-1])
    if got != nbytes:
        raise RuntimeError(f"guest received {got} bytes of {nbytes}")
    return elapsed


def guest_to_host(console: GuestConsole, port: int, nbytes: int) -> float:
    count = nbytes // CHUNK
    # nc runs dd with its output on the accepted connection (busybox nc -e must come last)
    console.proc.stdin.write(f"nc -l -p {GUEST_PORTS[1]} -e dd if=/dev/zero bs={CHUNK} count={count} "
                             "2>/dev/null </dev/null &\n".encode())
    console.proc.stdin.flush()
    guest(console, f"while ! netstat -tln | grep -q :{GUEST_PORTS[1]}; do sleep 0.2; done")
    s = connect(port)
    s.settimeout(600)
    got = 0
    t0 = time.monotonic()
    while got < count * CHUNK:
        d = s.recv(1 << 20)
        if not d:
            break
        got += len(d)
    elapsed = time.monotonic() - t0
    s.close()
    if got != count * CHUNK:
        raise RuntimeError(f"host received {got} bytes of {count * CHUNK}")
    return elapsed


def request_latency(console: GuestConsole, port: int, n: int = 15) -> float:
    guest(console, f"httpd -p {GUEST_PORTS[2]} -h /www")
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        s = connect(port)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        s.settimeout(60)
        while s.recv(4096):
            pass
        s.close()
        times.append(time.monotonic() - t0)
    return statistics.median(times)


def run_one(label: str, argv: list[str], ports: list[int], mb: int, log: pathlib.Path) -> dict:
    t0 = time.monotonic()
    console = GuestConsole(argv, env=dict(os.environ, PYTHONPATH=str(ROOT)), log_path=str(log))
    try:
        console.wait_for(READY_MARKER, 1200)
        boot = time.monotonic() - t0
        guest(console, "ip link set eth0 up && udhcpc -i eth0 -n -q -t 10 -T 3 >/dev/null 2>&1 && "
                       "ip addr show eth0 | grep -q 10.0.2.15")
        nbytes = mb << 20
        res = {"boot_s": boot}
        # host -> guest last: after a long receive a REM guest on the 8259 alone (no IO-APIC) was
        # seen to stop taking timer interrupts, which must not cost the other two numbers
        steps = (("g2h_MBps", lambda: mb / guest_to_host(console, ports[1], nbytes)),
                 ("latency_ms", lambda: request_latency(console, ports[2]) * 1000),
                 ("h2g_MBps", lambda: mb / host_to_guest(console, ports[0], nbytes)))
        for key, step in steps:
            try:
                res[key] = step()
            except (RuntimeError, TimeoutError, OSError) as e:     # report the failure, go on with the rest
                print(f"  {label}: {key} failed: {str(e).splitlines()[0]}", file=sys.stderr, flush=True)
                return res
        return res
    finally:
        console.proc.kill()
        console.close(30)


def cell(r: dict, key: str, width: int, prec: int) -> str:
    return f"{r[key]:{width}.{prec}f}" if key in r else f"{'failed':>{width}}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--nics", default="e1000,virtio")
    ap.add_argument("--memory", type=int, default=256)
    ap.add_argument("--only", choices=["qemu", "ours"])
    args = ap.parse_args()
    if not (GUEST / "vmlinux").exists():
        print("no guest: run python -m vmm.guest.builder", file=sys.stderr)
        return 2
    have_qemu = shutil.which("qemu-system-x86_64") is not None
    logdir = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / "vboxpy-bench-net"
    logdir.mkdir(exist_ok=True)
    print(f"{'NIC':8} {'VMM':6} {'boot s':>7} {'h->g MB/s':>10} {'g->h MB/s':>10} {'req ms':>8}   "
          f"({args.mb} MB)")
    for nic in args.nics.split(","):
        peers = []
        if args.only != "qemu":
            peers.append(("ours", ours_argv))
        if args.only != "ours" and have_qemu:
            peers.append(("qemu", qemu_argv))
        for label, make in peers:
            ports = free_ports(3)
            r = run_one(label, make(nic, ports, args.memory), ports, args.mb, logdir / f"{nic}-{label}.log")
            print(f"{nic:8} {label:6} {cell(r, 'boot_s', 7, 1)} {cell(r, 'h2g_MBps', 10, 2)} "
                  f"{cell(r, 'g2h_MBps', 10, 2)} {cell(r, 'latency_ms', 8, 1)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
