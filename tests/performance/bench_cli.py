#!/usr/bin/env python3
"""Benchmark: `vboxmanage` commands and vboxsvc's cold start beside virsh and libvirtd, in one run.

Every figure is printed beside its peer, measured in the same run on the same machine:
  vboxmanage --version                        virsh --version
  vboxmanage list vms            (N VMs)      virsh list --all            (N domains)
  vboxmanage showvminfo <vm> --machinereadable   virsh dominfo <domain>
  vboxmanage getextradata <vm> <key>          virsh dominfo <domain>
  service cold start: `vboxmanage list vms` with no vboxsvc running (it spawns the service, which
  answers from its quick view while it loads     `virsh list --all` with no libvirtd running (it
  the N machines), the same after a change       spawns the session daemon, which loads N domains)
  (the machines loaded before the answer), and
  `showvminfo` (waits for the loading)        `virsh dominfo` with no libvirtd running
and, without a peer: the bare interpreter start, the CLI started the pip way (`python3 -m ...`, site
initialisation and all), and a polling loop of `showvminfo --machinereadable` on a running VM: how
much CPU the VM process spends answering it (the service's stand-in VM process from the tests,
which answers the console calls the same way vboxheadless does: what it spends is taken from the
guest's vCPU threads at most).
vboxmanage runs as scripts/install.sh installs it (the launcher of scripts/write_launchers.py: the
native one, which forks each run from a resident command server, or the `python3 -IS` script where
no compiler is at hand), each run a fresh launcher process against a running service; the route the
runs took is printed. libvirt runs as a
session daemon of `nobody` in a temporary tree (qemu:///session; as root that URI would be the system
daemon). virsh and libvirtd come from `scripts/install.sh --bench` (libvirt-clients,
libvirt-daemon-system); without --no-install this script apt-installs them when missing.
Usage: python3 tests/performance/bench_cli.py [--vms 50] [--runs 30] [--cold-runs 5] [--polls 100]
                                              [--no-install]
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

FAKE_VM = os.path.join(ROOT, "tests", "integration", "vboxsvc", "fake_vm.py")
DOMAIN_XML = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64'>hvm</type></os></domain>"""
KEY = "bench/Key"


def timed(run, runs: int) -> tuple[float, float]:
    """(median ms, min ms) of `runs` calls of run() after one warm-up."""
    run()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), min(samples)


def command(cmd: list[str], env: dict | None = None, user: str | None = None, check_out: str | None = None):
    def run():
        proc = subprocess.run(cmd, env=env, user=user, capture_output=True, text=True)
        if proc.returncode != 0 or (check_out is not None and check_out not in proc.stdout):
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")

    return run


# ------------------------------------------------------------------------------------ ours
class Ours:
    def __init__(self, base: str, count: int):
        self.base = base
        self.env = dict(
            os.environ,
            HOME=base,
            VBOX_USER_HOME=os.path.join(base, "vbox"),
            VBOXPY_RUNTIME_DIR=os.path.join(base, "run"),
            XDG_RUNTIME_DIR=os.path.join(base, "run"),   # the command server's socket too
        )
        for var in ("XDG_CONFIG_HOME", "PYTHONPATH", "VBOXPY_NO_CMDSERVER", "VBOXPY_CMDSERVER_TRACE"):
            self.env.pop(var, None)
        bindir = os.path.join(base, "bin")
        os.mkdir(bindir)
        subprocess.run(
            [sys.executable, os.path.join(ROOT, "scripts", "write_launchers.py"), "--dir", bindir],
            check=True,
            capture_output=True,
        )
        self.cli = [os.path.join(bindir, "vboxmanage")]
        os.makedirs(self.env["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)
        self.pip_style = [sys.executable, "-m", "frontends.vboxmanage.main"]
        os.environ.update({k: self.env[k] for k in ("HOME", "VBOX_USER_HOME", "VBOXPY_RUNTIME_DIR")})
        from vboxsvc.ipc.client import connect

        client = connect()
        vbox = client.virtualbox
        vbox.system_properties.default_machine_folder = os.path.join(base, "VirtualBox VMs")
        for i in range(count):
            name = f"bench-{i:02d}"
            m = vbox.create_machine(
                vbox.compose_machine_filename(name, "", "", ""), name, 1, [], "Linux_64", ""
            )
            if i == 3:
                m.set_extra_data(KEY, "a value")  # not registered yet: a new machine is changed directly
            m.save_settings()
            vbox.register_machine(m)
        client.close()

    def route(self) -> str:
        """How the launcher runs a command: through the command server (started by the first runs
        when the launcher is the native one) or directly; waits up to 5 s for the server."""
        trace = os.path.join(self.base, "route")
        env = dict(self.env, VBOXPY_CMDSERVER_TRACE=trace)
        last = "direct (the Python launcher: no route is traced)"
        for _ in range(100):
            subprocess.run(self.cli + ["--version"], env=env, capture_output=True)
            if os.path.exists(trace):
                with open(trace) as handle:
                    last = handle.read().splitlines()[-1]
                if last.startswith("server "):
                    break
            time.sleep(0.05)
        return last

    def stop_cmdserver(self) -> None:
        try:
            with open(os.path.join(self.base, "route")) as handle:
                route = handle.read().splitlines()[-1]
        except (OSError, IndexError):
            return
        if route.startswith("server "):
            try:
                os.kill(int(route.split()[1]), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass

    def run(self, *args, cli=None):
        return command((cli or self.cli) + list(args), self.env)

    def stop_service(self) -> None:
        stop_services(self.env["VBOXPY_RUNTIME_DIR"])

    def cold(self, runs: int, *args: str, changed: bool = False) -> tuple[float, float]:
        """A command (default `list vms`) with no service running. `changed`: VirtualBox.xml touched
        before each start (as another program writing it would), so the service reads every machine's
        settings before it answers (the quick start, vboxsvc/server/quickstart.py, needs the files as
        the last service left them)."""
        samples = []
        main = os.path.join(self.env["VBOX_USER_HOME"], "VirtualBox.xml")
        self.stop_service()
        self.run("list", "vms")()   # a full read if anything changed since the last: it leaves the record
        for _ in range(runs):
            self.stop_service()
            if changed:
                os.utime(main)
            t0 = time.perf_counter()
            self.run(*(args or ("list", "vms")))()
            samples.append((time.perf_counter() - t0) * 1000)
        return statistics.median(samples), min(samples)

    def polling(self, polls: int) -> tuple[float, float, float] | str:
        """(VM process CPU ms per showvminfo, its share of one core during the loop in %,
        loop ms per call)."""
        self.stop_service()
        self.env["VBOXPY_VM_PROCESS"] = f"{sys.executable} {FAKE_VM}"
        try:
            self.run("startvm", "bench-00", "--type", "headless")()
            pid = self._vm_pid()
            show = self.run("showvminfo", "bench-00", "--machinereadable")
            show()
            cpu0, t0 = _cpu_s(pid), time.perf_counter()
            for _ in range(polls):
                show()
            cpu, wall = _cpu_s(pid) - cpu0, time.perf_counter() - t0
            self.run("controlvm", "bench-00", "poweroff")()
        finally:
            self.env.pop("VBOXPY_VM_PROCESS", None)
            self.stop_service()
        return cpu * 1000 / polls, 100 * cpu / wall, wall * 1000 / polls

    def _vm_pid(self) -> int:
        for _ in range(100):
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        with open(f"/proc/{entry}/cmdline", "rb") as handle:
                            argv = handle.read().split(b"\0")
                        with open(f"/proc/{entry}/environ", "rb") as handle:
                            mine = (
                                f"VBOXPY_RUNTIME_DIR={self.env['VBOXPY_RUNTIME_DIR']}".encode()
                                in handle.read()
                            )
                    except OSError:
                        continue
                    if mine and any(a.endswith(b"fake_vm.py") for a in argv):
                        return int(entry)
            time.sleep(0.05)
        raise RuntimeError("the VM process did not show up")


def stop_services(run: str) -> None:
    """SIGTERM to the services whose pid files are in `run`, and wait until they are gone."""
    pids = []
    for entry in os.listdir(run) if os.path.isdir(run) else []:
        if entry.startswith("vboxsvc") and entry.endswith(".pid"):
            try:
                with open(os.path.join(run, entry)) as handle:
                    pids.append(int(handle.read().split()[0]))
            except (OSError, ValueError, IndexError):
                pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(200):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.02)


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------ libvirt
def ensure_libvirt(install: bool) -> str | None:
    if shutil.which("virsh") and shutil.which("libvirtd"):
        return None
    if not install:
        return "virsh/libvirtd not installed (--no-install; scripts/install.sh --bench installs them)"
    proc = subprocess.run(
        [
            "apt-get",
            "-o",
            "DPkg::Lock::Timeout=900",
            "install",
            "-y",
            "-q",
            "libvirt-clients",
            "libvirt-daemon-system",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
    )
    if proc.returncode != 0 or not shutil.which("virsh"):
        return f"apt-get install libvirt-clients libvirt-daemon-system failed: {proc.stderr.strip()[-300:]}"
    return None


class Libvirt:
    """libvirt's session daemon in a private tree, started by virsh on demand (as vboxsvc is by
    vboxmanage)."""

    URI = "qemu:///session"

    def __init__(self, count: int):
        self.base = tempfile.mkdtemp(prefix="bench-virsh-", dir="/tmp")
        os.chmod(self.base, 0o755)
        self.user = "nobody" if os.geteuid() == 0 else None  # root's qemu:///session is the system daemon
        for d in ("config", "cache", "run", "home"):
            os.makedirs(f"{self.base}/{d}", mode=0o700)
            if self.user:
                shutil.chown(f"{self.base}/{d}", self.user)
        home = pwd.getpwnam(self.user).pw_dir if self.user else os.environ.get("HOME", "/")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "XDG_CONFIG_HOME": f"{self.base}/config",
            "XDG_CACHE_HOME": f"{self.base}/cache",
            "XDG_RUNTIME_DIR": f"{self.base}/run",
            "HOME": f"{self.base}/home" if self.user else home,
        }
        lines = []
        for i in range(count):
            path = f"{self.base}/vbench-{i:02d}.xml"
            with open(path, "w") as handle:
                handle.write(DOMAIN_XML.format(name=f"vbench-{i:02d}"))
            os.chmod(path, 0o644)
            lines.append(f"define {path}\n")
        proc = subprocess.run(
            self.cmd(), input="".join(lines), env=self.env, user=self.user, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"virsh define failed: {proc.stderr.strip()[-300:]}")
        listed = subprocess.run(
            self.cmd("list", "--all", "--name"), env=self.env, user=self.user, capture_output=True, text=True
        ).stdout.split()
        if len(listed) != count:
            raise RuntimeError(f"virsh lists {len(listed)} domains, not {count}")

    def cmd(self, *args) -> list[str]:
        return ["virsh", "-q", "-c", self.URI, *args]

    def run(self, *args, check_out: str | None = None):
        return command(self.cmd(*args), self.env, self.user, check_out)

    def daemon_pid(self) -> int | None:
        try:
            with open(f"{self.base}/run/libvirt/libvirtd.pid") as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            return None

    def stop_daemon(self) -> None:
        pid = self.daemon_pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(250):
            if not os.path.exists(f"/proc/{pid}"):
                return
            time.sleep(0.02)

    def cold(self, runs: int, *args: str) -> tuple[float, float]:
        samples = []
        for _ in range(runs):
            self.stop_daemon()
            t0 = time.perf_counter()
            self.run(*(args or ("list", "--all")), check_out="vbench-0")()
            samples.append((time.perf_counter() - t0) * 1000)
        return statistics.median(samples), min(samples)

    def cleanup(self) -> None:
        self.stop_daemon()
        shutil.rmtree(self.base, ignore_errors=True)


# ------------------------------------------------------------------------------------ report
def row(label: str, ours, peer_label: str = "", peer=None) -> str:
    mine = f"{ours[0]:7.1f} / {ours[1]:6.1f}"
    if peer is None:
        return f"{label:44} {mine:>17}   {peer_label}"
    theirs = f"{peer[0]:7.1f} / {peer[1]:6.1f}"
    return f"{label:44} {mine:>17}   {peer_label:34} {theirs:>17}   {ours[0] / peer[0]:5.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=50)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--polls", type=int, default=100)
    parser.add_argument("--no-install", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()
    base = tempfile.mkdtemp(prefix="bench-cli-")
    ours, peer = None, None
    vm, dom = "bench-03", "vbench-03"
    lines = []
    try:
        ours = Ours(base, args.vms)
        route_before = ours.route()
        problem = ensure_libvirt(not args.no_install)
        if problem is None:
            try:
                peer = Libvirt(args.vms)
            except (RuntimeError, OSError, KeyError) as e:
                problem = str(e)

        def pair(label, ours_args, peer_label, peer_args, check_out=None):
            mine = timed(ours.run(*ours_args), args.runs)
            theirs = timed(peer.run(*peer_args, check_out=check_out), args.runs) if peer else None
            lines.append(row(label, mine, peer_label if peer else f"({problem})", theirs))

        lines.append(
            row(
                "python3 -IS -c pass (interpreter start)",
                timed(command([sys.executable, "-IS", "-c", "pass"]), args.runs),
            )
        )
        pair("vboxmanage --version", ["--version"], "virsh --version", ["--version"])
        pair(
            f"vboxmanage list vms ({args.vms} VMs)",
            ["list", "vms"],
            "virsh list --all",
            ["list", "--all"],
            "vbench-49" if args.vms >= 50 else None,
        )
        pair(
            "vboxmanage showvminfo --machinereadable",
            ["showvminfo", vm, "--machinereadable"],
            "virsh dominfo",
            ["dominfo", dom],
        )
        pair(
            "vboxmanage getextradata <vm> <key>", ["getextradata", vm, KEY], "virsh dominfo", ["dominfo", dom]
        )
        lines.append(
            row(
                "list vms, started the pip way (python3 -m)",
                timed(ours.run("list", "vms", cli=ours.pip_style), args.runs),
                "(site initialisation, no launcher)",
            )
        )
        theirs = peer.cold(args.cold_runs) if peer else None
        peer_label = "libvirtd spawned + virsh list --all" if peer else f"({problem})"
        lines.append(row("cold start: vboxsvc spawned + list vms", ours.cold(args.cold_runs), peer_label,
                         theirs))
        lines.append(row("  the same, a settings file changed by another",
                         ours.cold(args.cold_runs, changed=True), peer_label, theirs))
        lines.append(row("  cold start + showvminfo (full read first)",
                         ours.cold(args.cold_runs, "showvminfo", vm, "--machinereadable"),
                         "libvirtd spawned + virsh dominfo" if peer else f"({problem})",
                         peer.cold(args.cold_runs, "dominfo", dom) if peer else None))
        polled = ours.polling(args.polls)
        route = ours.route()
    finally:
        if ours is not None:
            ours.stop_cmdserver()
        stop_services(os.path.join(base, "run"))
        if peer is not None:
            peer.cleanup()
        shutil.rmtree(base, ignore_errors=True)
    print(
        f"{args.vms} VMs / domains; {args.runs} fresh processes per figure (cold start: {args.cold_runs}); "
        f"ms, median / min; last column ours / peer (median)"
    )
    print(f"vboxmanage route (launcher trace) before / after the figures: {route_before} / {route}")
    print(f"{'':44} {'ours':>17}   {'peer':34} {'':>17}   ratio")
    print("\n".join(lines))
    if isinstance(polled, str):
        print(f"polling loop: not measured: {polled}")
    else:
        per_call, share, loop = polled
        print(
            f"polling loop of {args.polls} showvminfo --machinereadable on a running VM: "
            f"{loop:.1f} ms per call; "
            f"the VM process spent {per_call:.2f} ms CPU per call = {share:.1f}% of one core during the loop"
        )
    print(
        f"load average before / after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} CPUs (figures taken on a busy machine are noisy; compare within one run)"
    )


if __name__ == "__main__":
    main()
