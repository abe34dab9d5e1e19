"""Benchmark: a fresh `vboxmanage list vms` with 50 registered VMs beside `virsh list --all`.

Both sides run as fresh processes against an already running daemon (our vboxsvc; libvirt's
session daemon), with 50 machines/domains defined, in one run on the same machine.  Also
prints the bare interpreter start and `vboxmanage --version` so the start-up share is visible.
virsh comes from libvirt-clients/libvirt-daemon-system, apt-installed here when missing.
Usage: python tests/performance/bench_cli.py [--vms 50] [--runs 30] [--no-install]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

DOMAIN_XML = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64'>hvm</type></os></domain>"""


def timed(cmd: list[str], env: dict, runs: int) -> tuple[float, float, str]:
    """(median ms, min ms, last stdout) of `runs` fresh runs after one warm-up."""
    subprocess.run(cmd, env=env, capture_output=True, check=True)
    samples, out = [], ""
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        samples.append((time.perf_counter() - t0) * 1000)
        out = proc.stdout
    return statistics.median(samples), min(samples), out


def setup_ours(home: str, count: int) -> dict:
    env = dict(os.environ, HOME=home, VBOX_USER_HOME=os.path.join(home, "vbox"),
               VBOXPY_RUNTIME_DIR=os.path.join(home, "run"), PYTHONPATH=ROOT)
    os.environ.update({k: env[k] for k in ("HOME", "VBOX_USER_HOME", "VBOXPY_RUNTIME_DIR")})
    from vboxsvc.ipc.client import connect

    client = connect()
    vbox = client.virtualbox
    vbox.system_properties.default_machine_folder = os.path.join(home, "VirtualBox VMs")  # not /root's
    for i in range(count):
        name = f"bench-{i:02d}"
        machine = vbox.create_machine(vbox.compose_machine_filename(name, "", "", ""), name, 1, [],
                                      "Linux_64", "")
        machine.save_settings()
        vbox.register_machine(machine)
    client.close()
    return env


def stop_ours(home: str) -> None:
    for entry in os.listdir(os.path.join(home, "run")):
        if entry.startswith("vboxsvc") and entry.endswith(".pid"):
            try:
                with open(os.path.join(home, "run", entry)) as handle:
                    os.kill(int(handle.read().split()[0]), signal.SIGTERM)
            except (OSError, ValueError, IndexError):
                pass


def ensure_virsh(install: bool) -> str | None:
    if shutil.which("virsh"):
        return None
    if not install:
        return "virsh not installed (--no-install)"
    proc = subprocess.run(["apt-get", "install", "-y", "-q", "libvirt-clients", "libvirt-daemon-system"],
                          capture_output=True, text=True,
                          env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if proc.returncode != 0 or not shutil.which("virsh"):
        return f"apt-get install libvirt-clients libvirt-daemon-system failed: {proc.stderr.strip()[-300:]}"
    return None


def start_libvirtd(workdir: str) -> int | None:
    """No daemon listening (no systemd here): start libvirtd ourselves; returns its pid."""
    if not shutil.which("libvirtd"):
        return None
    pid_file = os.path.join(workdir, "libvirtd.pid")
    if subprocess.run(["libvirtd", "-d", "-p", pid_file], capture_output=True).returncode != 0:
        return None
    for _ in range(50):
        if os.path.exists(pid_file) and open(pid_file).read().strip():
            return int(open(pid_file).read().split()[0])
        time.sleep(0.1)
    return None


def setup_virsh(count: int, uri: str, workdir: str) -> tuple[list[str] | None, str]:
    base = ["virsh", "-c", uri]
    probe = subprocess.run(base + ["list", "--all", "--name"], capture_output=True, text=True)
    if probe.returncode != 0 and "Failed to connect socket" in probe.stderr and start_libvirtd(workdir):
        time.sleep(1)
        probe = subprocess.run(base + ["list", "--all", "--name"], capture_output=True, text=True)
    if probe.returncode != 0:
        return None, f"virsh -c {uri} cannot run here: {probe.stderr.strip()[-300:]}"
    for i in range(count):
        name = f"vbench-{i:02d}"
        path = os.path.join(workdir, f"{name}.xml")
        with open(path, "w") as handle:
            handle.write(DOMAIN_XML.format(name=name))
        proc = subprocess.run(base + ["define", path], capture_output=True, text=True)
        if proc.returncode != 0 and "already exists" not in proc.stderr:
            return None, f"virsh define failed: {proc.stderr.strip()[-300:]}"
    return base, ""


def teardown_virsh(base: list[str], count: int) -> None:
    for i in range(count):
        subprocess.run(base + ["undefine", f"vbench-{i:02d}"], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=50)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--no-install", action="store_true")
    parser.add_argument("--virsh-uri", default="qemu:///session")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="bench-cli-")
    cli = shutil.which("vboxmanage")
    ours = [cli] if cli else [sys.executable, "-m", "frontends.vboxmanage.main"]
    try:
        env = setup_ours(home, args.vms)
        bare = timed([sys.executable, "-c", "pass"], env, args.runs)
        version = timed(ours + ["--version"], env, args.runs)
        listing = timed(ours + ["list", "vms"], env, args.runs)
        assert listing[2].count("\n") == args.vms, listing[2]
        print(f"command: {' '.join(ours)}  ({args.vms} VMs, {args.runs} fresh runs each, median / min)")
        print(f"python -c pass              {bare[0]:7.1f} ms / {bare[1]:7.1f} ms")
        print(f"vboxmanage --version        {version[0]:7.1f} ms / {version[1]:7.1f} ms")
        print(f"vboxmanage list vms         {listing[0]:7.1f} ms / {listing[1]:7.1f} ms")
    finally:
        stop_ours(home)
    try:
        compare_virsh(args, home, listing[0])
    finally:
        shutil.rmtree(home, ignore_errors=True)


def compare_virsh(args, home: str, ours_ms: float) -> None:
    problem = ensure_virsh(not args.no_install)
    if problem:
        print(f"virsh list --all            not measured: {problem}")
        return
    base, problem = setup_virsh(args.vms, args.virsh_uri, home)
    if base is None:
        print(f"virsh list --all            not measured: {problem}")
        return
    note = " (as root this URI is served by the system libvirtd)" if os.geteuid() == 0 else ""
    try:
        peer = timed(base + ["list", "--all"], dict(os.environ), args.runs)
        assert peer[2].count("vbench-") == args.vms, peer[2]
        if note:
            print(f"virsh note: {note.strip(' ()')}")
        print(f"virsh -c {args.virsh_uri} list --all  {peer[0]:7.1f} ms / {peer[1]:7.1f} ms")
        print(f"ratio (ours / virsh, median): {ours_ms / peer[0]:.2f}")
    finally:
        teardown_virsh(base, args.vms)
        pid_file = os.path.join(home, "libvirtd.pid")
        if os.path.exists(pid_file):  # the daemon we started
            os.kill(int(open(pid_file).read().split()[0]), signal.SIGTERM)


if __name__ == "__main__":
    main()
