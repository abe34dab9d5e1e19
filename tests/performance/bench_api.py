#!/usr/bin/env python3
"""Main API speed: vboxsvc over the bus beside libvirt (virsh, qemu:///session) in the same run.

Measures (each side in its own temporary home, nothing touches ~/.config):
  round trip of a trivial call   ours: IVirtualBox.version   peer: `hostname` in one virsh shell
                                 (ours also: CPU time per call of the service and of the client)
  calls/s with 1 and 8 clients   ours: client processes       peer: virsh shell processes
  cold start to first answer     ours: connect() autostarting vboxsvc    peer: virsh autostarting libvirtd
                                 (ours also: the service's CPU time to that answer, and both again with the
                                 project's bytecode cached when PYTHONDONTWRITEBYTECODE forbids writing it)
  service memory (RSS) with 200 registered VMs   ours: vboxsvc   peer: libvirtd with 200 defined domains
Targets: p50 <= 100 us, >= 10k calls/s, cold start <= 0.3 s.
Run: python3 tests/performance/bench_api.py [--calls N] [--seconds S] [--vms N]
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
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


# ------------------------------------------------------------------------------------ ours
class Ours:
    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="vbxb", dir="/tmp")
        self.env = dict(os.environ, VBOX_USER_HOME=f"{self.base}/home", VBOXPY_RUNTIME_DIR=f"{self.base}/run",
                        VBOXSVC_SHUTDOWN_DELAY_MS="1000", PYTHONPATH=ROOT)
        os.makedirs(f"{self.base}/run", mode=0o700)
        os.environ.update({k: self.env[k] for k in ("VBOX_USER_HOME", "VBOXPY_RUNTIME_DIR",
                                                     "VBOXSVC_SHUTDOWN_DELAY_MS")})

    def cold_start(self, bytecode_cache: bool = False) -> tuple[float, float]:
        """Seconds from before the client's import to the first answer, and the CPU seconds the service used.

        With bytecode_cache, the project's modules are not compiled again on every start (as for an
        installed package): PYTHONDONTWRITEBYTECODE is dropped and compiled code goes to a private prefix.
        """
        code = ("import os, time; t=time.perf_counter(); from vboxsvc.ipc.client import connect; "
                "c=connect(); "
                "c.virtualbox.version; d=time.perf_counter()-t; "
                "f=open(f'/proc/{c.service_pid}/stat').read().rsplit(')', 1)[1].split(); "
                # + the launcher (reaped by connect): the interpreter's start before the fork
                "k=os.times(); "
                "print(d, (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK') + k.children_user + "
                "k.children_system);"
                " c.close()")
        env = dict(self.env)
        if bytecode_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = f"{self.base}/pycache"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True)
        self._wait_gone()
        wall, cpu = out.stdout.split()[-2:]
        return float(wall), float(cpu)

    def _pid(self) -> int:
        from vboxsvc.ipc import paths
        try:
            with open(paths.life_lock_path()) as f:
                return int(f.read().strip() or 0)
        except FileNotFoundError:
            return 0

    def _wait_gone(self):
        pid = self._pid()
        deadline = time.monotonic() + 15
        while pid and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def latency(self, n: int) -> list[float]:
        from vboxsvc.ipc.client import connect
        c = connect()
        v = c.virtualbox
        for _ in range(200):
            _ = v.version
        samples = []
        svc0, me0 = cpu_s(c.service_pid), time.process_time()
        for _ in range(n):
            t = time.perf_counter_ns()
            _ = v.version
            samples.append((time.perf_counter_ns() - t) / 1000)
        # CPU time per call (ZeroMQ's I/O threads included) is steadier than wall time on a loaded host
        self.cpu_per_call = ((cpu_s(c.service_pid) - svc0) / n * 1e6, (time.process_time() - me0) / n * 1e6)
        self.client = c
        return samples

    def throughput(self, clients: int, seconds: float) -> float:
        """Sum over clients of calls/s, all clients connected first and released together."""
        code = textwrap.dedent(f"""
            import sys, time
            from vboxsvc.ipc.client import connect
            c = connect(); v = c.virtualbox; v.version
            print("ready", flush=True); sys.stdin.readline()
            n = 0; t0 = time.perf_counter(); end = t0 + {seconds}
            while time.perf_counter() < end:
                v.version; n += 1
            print(n / (time.perf_counter() - t0), flush=True); c.close()
        """)
        procs = [subprocess.Popen([sys.executable, "-c", code], env=self.env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True) for _ in range(clients)]
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        return sum(float(p.communicate()[0].split()[-1]) for p in procs)

    def memory(self, vms: int) -> tuple[int, int, int]:
        v = self.client.virtualbox
        pid = self.client.service_pid
        empty = rss_kb(pid)
        v.system_properties.default_machine_folder = f"{self.base}/vms"
        for i in range(vms):
            m = v.create_machine("", f"vm{i:03d}", os_type_id="Linux_64")
            m.save_settings()
            v.register_machine(m)
        after = rss_kb(pid)
        self.client.close()
        self._wait_gone()
        from vboxsvc.ipc.client import connect
        c = connect()  # a fresh service loading the 200 machines from disk
        assert len(c.virtualbox.machines) == vms
        loaded = rss_kb(c.service_pid)
        c.close()
        self._wait_gone()
        return empty, after, loaded

    def cleanup(self):
        pid = self._pid()
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)


# ------------------------------------------------------------------------------------ libvirt
class Libvirt:
    URI = "qemu:///session"

    def __init__(self):
        # root's qemu:///session means the system daemon; run the session daemon as `nobody` instead,
        # with every libvirt directory in a temporary tree
        self.base = tempfile.mkdtemp(prefix="lvb", dir="/tmp")
        os.chmod(self.base, 0o755)
        self.user = "nobody" if os.geteuid() == 0 else None
        for d in ("config", "cache", "run", "home"):
            os.makedirs(f"{self.base}/{d}", mode=0o700)
            if self.user:
                shutil.chown(f"{self.base}/{d}", self.user)
        self.vars = [f"XDG_CONFIG_HOME={self.base}/config", f"XDG_CACHE_HOME={self.base}/cache",
                     f"XDG_RUNTIME_DIR={self.base}/run", f"HOME={self.base}/home"]

    @staticmethod
    def available() -> bool:
        return shutil.which("virsh") is not None and shutil.which("libvirtd") is not None

    def _cmd(self, *args) -> list[str]:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        return prefix + ["env", *self.vars, "virsh", "-q", "-c", self.URI, *args]

    def _virsh(self, *args, stdin=None) -> subprocess.CompletedProcess:
        return subprocess.run(self._cmd(*args), input=stdin, capture_output=True, text=True, check=True)

    def cold_start(self) -> float:
        t = time.perf_counter()
        self._virsh("hostname")
        return time.perf_counter() - t

    def _shell_per_call(self, n: int) -> float:
        """Seconds per `hostname` call inside one virsh shell (connection set up once)."""
        t0 = time.perf_counter()
        self._virsh(stdin="hostname\n")
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        self._virsh(stdin="hostname\n" * (n + 1))
        many = time.perf_counter() - t0
        return (many - one) / n

    def latency(self, n: int) -> float:
        return self._shell_per_call(n) * 1e6

    def throughput(self, clients: int, seconds: float) -> float:
        n = 4000
        t0 = time.perf_counter()
        procs = [subprocess.Popen(self._cmd(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
                 for _ in range(clients)]
        for p in procs:
            p.stdin.write("hostname\n" * n)
            p.stdin.close()
        for p in procs:
            p.wait()
        return clients * n / (time.perf_counter() - t0)

    def memory(self, vms: int) -> tuple[int, int]:
        pid = self._daemon_pid()
        empty = rss_kb(pid)
        xml = "<domain type='qemu'><name>vm{i:03d}</name><memory unit='MiB'>128</memory>" \
              "<os><type arch='x86_64'>hvm</type></os></domain>"
        files = []
        for i in range(vms):
            path = f"{self.base}/vm{i:03d}.xml"
            with open(path, "w") as f:
                f.write(xml.format(i=i))
            os.chmod(path, 0o644)
            files.append(path)
        self._virsh(stdin="".join(f"define {p}\n" for p in files))
        assert len(self._virsh("list", "--all", "--name").stdout.split()) == vms
        return empty, rss_kb(pid)

    def _daemon_pid(self) -> int:
        with open(f"{self.base}/run/libvirt/libvirtd.pid") as f:
            return int(f.read().strip())

    def cleanup(self):
        try:
            os.kill(self._daemon_pid(), signal.SIGTERM)
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
        shutil.rmtree(self.base, ignore_errors=True)


def _time_cmd(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


def raw_zmq_rtt(n: int) -> float:
    """The floor: a ZeroMQ ipc:// echo between two processes, no msgpack, no signatures."""
    import zmq
    path = tempfile.mktemp(prefix="zb", dir="/tmp")
    code = textwrap.dedent(f"""
        import zmq
        s = zmq.Context().socket(zmq.ROUTER); s.bind("ipc://{path}")
        while True:
            f = s.recv_multipart()
            if f[1] == b"stop": break
            s.send_multipart(f)
    """)
    p = subprocess.Popen([sys.executable, "-c", code])
    ctx = zmq.Context()
    d = ctx.socket(zmq.DEALER)
    d.connect(f"ipc://{path}")
    for _ in range(200):
        d.send(b"x")
        d.recv()
    samples = []
    for _ in range(n):
        t = time.perf_counter_ns()
        d.send(b"x")
        d.recv()
        samples.append((time.perf_counter_ns() - t) / 1000)
    d.send(b"stop")
    p.wait()
    d.close(0)
    ctx.term()
    os.unlink(path)
    return statistics.median(samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--vms", type=int, default=200)
    args = ap.parse_args()

    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    ours = Ours()
    peer = Libvirt() if Libvirt.available() else None
    rows = []
    try:
        colds = [ours.cold_start() for _ in range(3)]
        cold, cold_cpu = statistics.median(c[0] for c in colds), statistics.median(c[1] for c in colds)
        ours.cold_start(bytecode_cache=True)  # fills the cache
        cached = [ours.cold_start(bytecode_cache=True) for _ in range(3)]
        cached_wall, cached_cpu = (
            statistics.median(c[0] for c in cached), statistics.median(c[1] for c in cached)
        )
        lat = ours.latency(args.calls)
        t1 = ours.throughput(1, args.seconds)
        t8 = ours.throughput(8, args.seconds)
        empty, after, loaded = ours.memory(args.vms)
        floor = raw_zmq_rtt(args.calls)
        bare = statistics.median(_time_cmd([sys.executable, "-c", "pass"]) for _ in range(3))
        rows.append(("trivial call p50 (us)", f"{statistics.median(lat):.0f}", None))
        rows.append(("trivial call p90 / p99 (us)", f"{pct(lat, 90):.0f} / {pct(lat, 99):.0f}", None))
        rows.append(("CPU per call, service / client (us)",
                     f"{ours.cpu_per_call[0]:.0f} / {ours.cpu_per_call[1]:.0f}", None))
        rows.append(("calls/s, 1 client", f"{t1:,.0f}", None))
        rows.append(("calls/s, 8 clients", f"{t8:,.0f}", None))
        rows.append(("cold start to first answer (s)", f"{cold:.3f}", None))
        rows.append(("service RSS, 0 VMs (MB)", f"{empty / 1024:.1f}", None))
        rows.append((f"service RSS, {args.vms} VMs created (MB)", f"{after / 1024:.1f}", None))
        rows.append((f"service RSS, {args.vms} VMs loaded at start (MB)", f"{loaded / 1024:.1f}", None))
        if peer is not None:
            pcold = peer.cold_start()
            plat = peer.latency(min(args.calls, 2000))
            p1 = peer.throughput(1, args.seconds)
            p8 = peer.throughput(8, args.seconds)
            pempty, pafter = peer.memory(args.vms)
            peer_vals = [f"{plat:.0f}", "-", "-", f"{p1:,.0f}", f"{p8:,.0f}", f"{pcold:.3f}",
                         f"{pempty / 1024:.1f}",
                         f"{pafter / 1024:.1f}", "-"]
            rows = [(a, b, c) for (a, b, _), c in zip(rows, peer_vals, strict=True)]
    finally:
        ours.cleanup()
        if peer is not None:
            peer.cleanup()
    head = "libvirt (virsh, qemu:///session)" if peer else "peer: virsh/libvirtd not installed"
    print(f"{'metric':44} {'vboxsvc':>16}   {head}")
    for name, ours_v, peer_v in rows:
        print(f"{name:44} {ours_v:>16}   {peer_v if peer_v is not None else ''}")
    print(f"{'(floor: raw ZeroMQ ipc echo p50, us)':44} {floor:>16.0f}")
    print(f"{'(context: bare python3 start-up, s)':44} {bare:>16.3f}")
    print(f"{'(cold start: service CPU to first answer, s)':44} {cold_cpu:>16.2f}")
    dwb = "PYTHONDONTWRITEBYTECODE is set" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "as above"
    print(f"{'(cold start, bytecode cached: wall / svc CPU)':44} "
          f"{f'{cached_wall:.3f} / {cached_cpu:.2f}':>16}"
          f"   ({dwb}: without a cache every start compiles the project's modules)")
    if peer is not None:
        print("peer notes: virsh numbers are per `hostname` command inside a virsh shell (one RPC each, "
              "plus virsh's own parsing); libvirtd memory counts 200 defined (inactive) domains.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
