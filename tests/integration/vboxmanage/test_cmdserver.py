"""The native `vboxmanage` launcher and its command server (frontends/vboxmanage/launcher.c,
cmdserver.py): a run through the server is the direct start's run, byte for byte; the caller's
environment, cwd, descriptors and signals reach the command; the server never serves stale code and
survives hostile clients; without a compiler the Python launcher is written."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.integration.world import pid_alive

ROOT = Path(__file__).resolve().parents[3]
MARK = "VBOXPY_TEST_CMDSERVER"
TREES = ("frontends", "vboxsvc", "settings", "scripts")


def _procs(mark: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    if f"{MARK}={mark}".encode() in handle.read().split(b"\0") and pid_alive(int(entry)):
                        found.append(int(entry))
            except OSError:
                continue
    return found


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class Setup:
    """A launcher built into a scratch folder, its own runtime folder (so its own servers and
    service), a fresh VBOX_USER_HOME, and a trace file naming each run's route."""

    def __init__(self, base: Path, root: Path = ROOT, python: str = sys.executable, cc: str | None = None):
        self.base = base
        self.bin = base / "bin"
        self.bin.mkdir()
        env = dict(os.environ)
        if cc is not None:
            env["CC"] = cc
        made = subprocess.run([python, str(root / "scripts" / "write_launchers.py"), "--dir", str(self.bin)],
                              capture_output=True, text=True, env=env, timeout=180)
        assert made.returncode == 0, made.stderr
        self.made = made
        self.launcher = str(self.bin / "vboxmanage")
        self.trace = base / "trace"
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("VBOX_USER_HOME", "XDG_CONFIG_HOME", "VBOXPY_RUNTIME_DIR", "PYTHONPATH",
                                 "VBOXPY_NO_CMDSERVER")}
        (base / "run").mkdir(mode=0o700)
        self.env.update(HOME=str(base / "home"), VBOX_USER_HOME=str(base / "vbox"),
                        XDG_RUNTIME_DIR=str(base / "run"), VBOXPY_RUNTIME_DIR=str(base / "run"),
                        VBOXPY_CMDSERVER_TRACE=str(self.trace), VBOXPY_CMDSERVER_IDLE_S="30",
                        VBOXSVC_SHUTDOWN_DELAY_MS="1000")
        self.env[MARK] = str(base)
        (base / "home").mkdir()

    def run(self, *args, env=None, direct=False, **kw) -> subprocess.CompletedProcess:
        env = dict(env or self.env)
        if direct:
            env["VBOXPY_NO_CMDSERVER"] = "1"
        kw.setdefault("timeout", 60)
        return subprocess.run([self.launcher, *args], env=env, capture_output=True, **kw)

    def routes(self) -> list[str]:
        return self.trace.read_text().splitlines() if self.trace.exists() else []

    def last_route(self) -> str:
        return self.routes()[-1]

    def sockets(self) -> list[Path]:
        return sorted((self.base / "run" / "vboxpy").glob("cmd-*.sock"))

    def served(self, *args, **kw) -> subprocess.CompletedProcess:
        """A run that went through a server (starting one first if none is up)."""
        for _ in range(100):
            proc = self.run(*args, **kw)
            if self.last_route().startswith("server "):
                return proc
            time.sleep(0.05)
        raise AssertionError(f"no run went through a server: {self.routes()[-5:]}")

    def server_pid(self) -> int:
        return int(self.last_route().split()[1])

    def cleanup(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in _procs(str(self.base)):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            wait_for(lambda: not _procs(str(self.base)), 5)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def setup():
    # socket paths must stay short (108 bytes): keep the folder in /tmp
    s = Setup(Path(tempfile.mkdtemp(prefix="vcs", dir="/tmp")))
    if "(native)" not in s.made.stdout:
        s.cleanup()
        pytest.skip(f"no native launcher could be built: {s.made.stderr.strip()}")
    yield s
    s.cleanup()


def _vm(setup: Setup, name: str, env=None) -> None:
    for args in (("createvm", "--name", name, "--register", "--basefolder", str(setup.base / "vms")),
                 ("setextradata", name, "test/Key", "a value")):
        proc = setup.run(*args, env=env, direct=True)
        assert proc.returncode == 0, proc.stderr


def test_runs_through_the_server_are_the_direct_runs(setup):
    _vm(setup, "alpha")
    cases = [
        ["--version"],
        ["frobnicate"],
        ["list", "vms"],
        ["showvminfo", "alpha", "--machinereadable"],
        ["getextradata", "alpha", "test/Key"],
        ["getextradata", "alpha", "enumerate"],
        ["showvminfo", "nosuch"],
        ["showvminfo"],
    ]
    codes = set()
    for args in cases:
        served = setup.served(*args)
        server = setup.server_pid()
        direct = setup.run(*args, direct=True)
        assert setup.last_route() == "direct opted-out"
        assert (served.returncode, served.stdout, served.stderr) == \
            (direct.returncode, direct.stdout, direct.stderr), args
        codes.add(served.returncode)
    assert codes == {0, 1, 2}
    # the caller's stdin is the command's (a response file read from it)
    served = setup.served("@/dev/stdin", input=b"--nologo list vms\n")
    last = setup.server_pid()
    direct = setup.run("@/dev/stdin", input=b"--nologo list vms\n", direct=True)
    assert served.stdout == direct.stdout and b"alpha" in served.stdout
    # every run above was a fork of one server
    assert server == last and pid_alive(server)


def test_environment_and_cwd_are_the_callers(setup):
    other = dict(setup.env, VBOX_USER_HOME=str(setup.base / "vbox2"))
    _vm(setup, "first")
    _vm(setup, "second", env=other)
    one = setup.served("list", "vms")
    two = setup.served("list", "vms", env=other)
    assert b'"first"' in one.stdout and b"second" not in one.stdout
    assert b'"second"' in two.stdout and b"first" not in two.stdout
    # a relative path resolves against the caller's cwd
    here = setup.base / "here"
    here.mkdir()
    (here / "args.rsp").write_text("getextradata first test/Key\n")
    proc = setup.served("@args.rsp", cwd=here)
    assert proc.returncode == 0 and proc.stdout == b"Value: a value\n"
    # umask and an extra descriptor of the caller reach the command too
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"--version\n")
    os.close(write_fd)
    try:
        proc = setup.served(f"@/dev/fd/{read_fd}", pass_fds=(read_fd,))
    finally:
        os.close(read_fd)
    assert proc.returncode == 0 and proc.stdout.startswith(b"7.")


def _blocked(setup: Setup) -> tuple[subprocess.Popen, int]:
    """A served command that waits for stdin (a response file read from an open pipe)."""
    setup.served("--version")
    before = len(setup.routes())
    proc = subprocess.Popen([setup.launcher, "@/dev/stdin"], env=setup.env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_for(lambda: len(setup.routes()) > before)
    route = setup.last_route().split()
    assert route[0] == "server", route
    child = int(route[3])
    assert pid_alive(child)
    return proc, child


def test_signals_reach_the_command_and_its_end_comes_back(setup):
    proc, child = _blocked(setup)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)   # stdin stays open: the command can only end by the signal
    proc.communicate(timeout=20)
    assert proc.returncode == -signal.SIGTERM     # killed by the signal, as a direct start would be
    assert wait_for(lambda: not pid_alive(child), 5)
    # the direct start ends the same way
    direct = subprocess.Popen([setup.launcher, "@/dev/stdin"], env=dict(setup.env, VBOXPY_NO_CMDSERVER="1"),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    direct.send_signal(signal.SIGTERM)
    direct.wait(timeout=20)
    direct.communicate(timeout=20)
    assert direct.returncode == -signal.SIGTERM


def test_the_command_dies_with_a_killed_launcher(setup):
    proc, child = _blocked(setup)
    proc.kill()
    proc.wait(timeout=10)
    assert wait_for(lambda: not pid_alive(child), 5)
    assert setup.served("--version").returncode == 0


def test_a_killed_server_leaves_the_launcher_waiting_for_its_command(setup):
    proc, child = _blocked(setup)
    os.kill(setup.server_pid(), signal.SIGKILL)
    time.sleep(0.5)
    assert proc.poll() is None and pid_alive(child)      # the command runs on: its caller waits for it
    out, err = proc.communicate(input=b"--version\n", timeout=30)
    assert out == setup.run("--version", direct=True).stdout
    assert proc.returncode == 1 and b"exit status is lost" in err
    assert wait_for(lambda: not pid_alive(child), 5)


def test_exit_code_and_stdin_eof(setup):
    proc, child = _blocked(setup)
    out, err = proc.communicate(input=b"showvminfo nosuch\n", timeout=30)
    assert proc.returncode == 1 and b"Could not find a registered machine named 'nosuch'" in err


def _copy_checkout(base: Path) -> Path:
    root = base / "checkout"
    for tree in TREES:
        shutil.copytree(ROOT / tree, root / tree, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_changed_code_is_not_served(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="vcs", dir="/tmp"))
    root = _copy_checkout(base)
    s = Setup(base / "s", root=root) if (base / "s").mkdir() is None else None
    try:
        if "(native)" not in s.made.stdout:
            pytest.skip("no native launcher could be built")
        want = s.run("--version", direct=True).stdout
        s.served("--version")
        old = s.server_pid()
        module = root / "frontends" / "vboxmanage" / "output.py"
        stat = module.stat()
        os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        proc = s.run("--version")
        assert proc.returncode == 0 and proc.stdout == want
        assert s.last_route() == "direct server-stale"
        assert wait_for(lambda: not pid_alive(old), 10)
        proc = s.served("--version")
        assert proc.stdout == want and s.server_pid() != old
    finally:
        s.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def test_hostile_clients_do_not_stop_the_server(setup):
    setup.served("--version")
    server = setup.server_pid()
    path = str(setup.sockets()[0])
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(path)
    garbage = socket.socket(socket.AF_UNIX)
    garbage.connect(path)
    garbage.sendall(os.urandom(5000))
    huge = socket.socket(socket.AF_UNIX)
    huge.connect(path)
    huge.sendall(struct.pack("=4sIIIIIIIQQ", b"VBXR", 1, 0xFFFFFFF0, 1, 0, 1, 0o22, 0, 0, 0) + b"x" * 100)
    short = socket.socket(socket.AF_UNIX)
    short.connect(path)
    short.sendall(struct.pack("=4sIIIIIIIQQ", b"VBXR", 1, 4, 9, 9, 1, 0o22, 0, 0, 0) + b"abcd")  # no fds
    t0 = time.monotonic()
    proc = setup.served("--version")
    assert proc.returncode == 0 and setup.server_pid() == server
    assert time.monotonic() - t0 < 3
    for sock in (silent, garbage, huge, short):
        sock.close()
    assert setup.served("list", "vms").returncode == 0 and setup.server_pid() == server


def test_idle_server_exits_and_removes_its_socket(setup):
    env = dict(setup.env, VBOXPY_CMDSERVER_IDLE_S="1")
    setup.served("--version", env=env)
    server = setup.server_pid()
    assert wait_for(lambda: not pid_alive(server), 10)
    assert setup.sockets() == []
    # killed -9: the next server takes over the socket file left behind
    setup.served("--version")
    server = setup.server_pid()
    os.kill(server, signal.SIGKILL)
    assert wait_for(lambda: not pid_alive(server), 5) and setup.sockets()
    assert setup.run("--version").returncode == 0
    assert setup.served("--version").returncode == 0 and setup.server_pid() != server


def test_opted_out_runs_start_no_server(setup):
    for _ in range(3):
        assert setup.run("--version", direct=True).returncode == 0
    time.sleep(0.5)
    assert setup.sockets() == [] and set(setup.routes()) == {"direct opted-out"}


def test_ordinary_user(ordinary_user):
    user, python = ordinary_user
    import pwd

    pw = pwd.getpwnam(user)
    base = Path(tempfile.mkdtemp(prefix="vcs", dir="/tmp"))
    os.chmod(base, 0o755)
    s = Setup(base, python=python)
    try:
        if "(native)" not in s.made.stdout:
            pytest.skip("no native launcher could be built")
        for p in (base, base / "run", base / "home"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        prefix = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--"]
        env = dict(s.env, USER=user, LOGNAME=user)

        def run(*args, direct=False):
            e = dict(env, VBOXPY_NO_CMDSERVER="1") if direct else env
            return subprocess.run(prefix + [s.launcher, *args], env=e, capture_output=True, timeout=60)

        want = run("list", "vms", direct=True)
        for _ in range(100):
            got = run("list", "vms")
            if s.last_route().startswith("server "):
                break
            time.sleep(0.05)
        assert s.last_route().startswith("server ")
        assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr)
        server = s.server_pid()
        with open(f"/proc/{server}/status") as handle:
            uids = next(line for line in handle if line.startswith("Uid:")).split()[1:]
        assert set(uids) == {str(pw.pw_uid)}
        # root cannot use that user's server (another key, and SO_PEERCRED would refuse it)
        sock = s.sockets()[0]
        assert sock.stat().st_uid == pw.pw_uid and (sock.parent.stat().st_mode & 0o077) == 0
    finally:
        s.cleanup()


def test_python_launcher_without_a_compiler(tmp_path):
    s = Setup(tmp_path, cc="/bin/false")
    try:
        assert "writing the Python launcher" in s.made.stderr
        text = (s.bin / "vboxmanage").read_text()
        assert text.startswith(f"#!{sys.executable} -IS\n")
        proc = s.run("--version")
        assert proc.returncode == 0 and proc.stdout.startswith(b"7.") and not s.routes()
    finally:
        s.cleanup()
