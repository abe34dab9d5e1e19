"""Starting and stopping the service: autostart races, idle exit, per-home services, systemd."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

from vboxsvc.api import VBoxError, identity
from vboxsvc.api import errors as rc

from .conftest import make_env, pid_alive, stop_service, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

CLIENT = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {ROOT!r})
    from vboxsvc.ipc.client import connect
    c = connect()
    print(c.service_pid, c.virtualbox.version, flush=True)
    sys.stdin.readline()   # stay connected until told to go
    c.close()
""")


@pytest.fixture
def env():
    e = make_env()
    yield e
    shutil.rmtree(e.base, ignore_errors=True)


def _service_pid(e) -> int:
    with open(e.run / f"vboxsvc-{_tag(e)}.pid") as f:
        return int(f.read().strip() or 0)


def _tag(e) -> str:
    import hashlib
    return hashlib.sha256(os.path.abspath(e.home).encode()).hexdigest()[:12]


def test_racing_clients_start_one_service_which_exits_when_idle(env):
    procs = [subprocess.Popen([sys.executable, "-c", CLIENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env=env.vars(VBOXSVC_SHUTDOWN_DELAY_MS="300")) for _ in range(10)]
    try:
        lines = [p.stdout.readline().decode().split() for p in procs]
        pids = {int(line[0]) for line in lines}
        assert len(pids) == 1, lines
        pid = pids.pop()
        assert all(line[1] == identity.current().version for line in lines)
        assert _service_pid(env) == pid and pid_alive(pid)
        for p in procs[:-1]:
            p.stdin.write(b"go\n")
            p.stdin.flush()
            p.wait(20)
        # one client remains: the service must stay, well past its idle delay
        assert not wait_for(lambda: not pid_alive(pid), 1.0)
        procs[-1].stdin.write(b"go\n")
        procs[-1].stdin.flush()
        procs[-1].wait(20)
        assert wait_for(lambda: not pid_alive(pid), 15)
        assert not os.path.exists(env.run / f"vboxsvc-{_tag(env)}.sock")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_two_homes_two_services(env, monkeypatch):
    other = make_env()
    try:
        pids = []
        for e in (env, other):
            out = subprocess.run([sys.executable, "-c", CLIENT], input=b"\n", capture_output=True,
                                 env=e.vars(VBOXSVC_SHUTDOWN_DELAY_MS="200"), timeout=60)
            pids.append(int(out.stdout.split()[0]))
        assert pids[0] != pids[1]
        for pid in pids:
            assert wait_for(lambda pid=pid: not pid_alive(pid), 15)
    finally:
        shutil.rmtree(other.base, ignore_errors=True)


def test_stale_socket_file_is_replaced(env):
    stale = env.run / f"vboxsvc-{_tag(env)}.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()  # the file stays, nobody listens
    out = subprocess.run([sys.executable, "-c", CLIENT], input=b"\n", capture_output=True,
                         env=env.vars(VBOXSVC_SHUTDOWN_DELAY_MS="200"), timeout=60)
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split()[0])
    assert wait_for(lambda: not pid_alive(pid), 15)


def test_broken_settings_are_reported(env, monkeypatch):
    bad = env.home / "VirtualBox.xml"
    bad.write_text("<VirtualBox><oops></VirtualBox>")
    monkeypatch.setenv("VBOX_USER_HOME", str(env.home))
    monkeypatch.setenv("VBOXPY_RUNTIME_DIR", str(env.run))
    monkeypatch.setenv("VBOXSVC_SHUTDOWN_DELAY_MS", "200")
    from vboxsvc.ipc.client import connect
    with pytest.raises(VBoxError) as e:
        connect()
    assert e.value.result_code == rc.VBOX_E_XML_ERROR
    assert str(bad) in e.value.text
    assert bad.read_text() == "<VirtualBox><oops></VirtualBox>"  # never overwritten
    pid = _service_pid(env)
    assert wait_for(lambda: not pid_alive(pid), 15)


def test_systemd_socket_activation(env, monkeypatch):
    """Start vboxsvc as systemd does: listening socket on fd 3, LISTEN_FDS/LISTEN_PID, NOTIFY_SOCKET."""
    monkeypatch.setenv("VBOX_USER_HOME", str(env.home))
    monkeypatch.setenv("VBOXPY_RUNTIME_DIR", str(env.run))
    from vboxsvc.ipc import paths
    path = paths.socket_path()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    notify_path = str(env.run / "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(30)
    script = 'exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"'
    proc = subprocess.Popen(["sh", "-c", script, "sh", sys.executable, "-m", "vboxsvc.server.main",
                             "--auto-shutdown", "--shutdown-delay", "300"],
                            stdin=listener.fileno(), env=env.vars(NOTIFY_SOCKET=notify_path, PYTHONPATH=ROOT))
    listener.close()  # the service owns it now (systemd would keep its copy)
    try:
        msg = notify.recv(4096).decode()
        assert "READY=1" in msg and f"MAINPID={proc.pid}" in msg
        from vboxsvc.ipc.client import connect
        c = connect(autostart_service=False)
        assert c.service_pid == proc.pid
        assert c.virtualbox.version == identity.current().version
        c.close()
        assert proc.wait(20) == 0  # idle exit
        assert os.path.exists(path)  # an adopted socket is systemd's: left in place
    finally:
        notify.close()
        if proc.poll() is None:
            stop_service(proc.pid)
            proc.wait()


def test_unit_files_describe_socket_activation(env):
    unit_dir = os.path.join(ROOT, "systemd")
    service = open(os.path.join(unit_dir, "vboxsvc.service")).read()
    sock = open(os.path.join(unit_dir, "vboxsvc.socket")).read()
    assert "Type=notify" in service and "ExecStart=vboxsvc" in service
    assert "ListenStream=%t/vboxpy/vboxsvc.sock" in sock and "SocketMode=0600" in sock
    # the socket unit names the endpoint vboxsvc computes for the default home (%t = XDG_RUNTIME_DIR)
    clean = {k: v for k, v in os.environ.items() if k not in ("VBOX_USER_HOME", "VBOXPY_RUNTIME_DIR")}
    clean["XDG_RUNTIME_DIR"] = str(env.run)
    out = subprocess.run([sys.executable, "-c", "from vboxsvc.ipc import paths; print(paths.socket_path())"],
                         capture_output=True, env=clean, cwd=ROOT, text=True)
    assert out.stdout.strip() == f"{env.run}/vboxpy/vboxsvc.sock"


def test_unreadable_machine_stays_registered_but_inaccessible(env, monkeypatch):
    monkeypatch.setenv("VBOX_USER_HOME", str(env.home))
    monkeypatch.setenv("VBOXPY_RUNTIME_DIR", str(env.run))
    monkeypatch.setenv("VBOXSVC_SHUTDOWN_DELAY_MS", "100")
    from vboxsvc.api import CleanupMode
    from vboxsvc.ipc.client import connect
    c = connect()
    vbox = c.virtualbox
    m = vbox.create_machine(str(env.vms / "broken" / "broken.vbox"), "broken", os_type_id="Linux_64")
    m.save_settings()
    vbox.register_machine(m)
    mid, path = m.id, m.settings_file_path
    pid = c.service_pid
    c.close()
    assert wait_for(lambda: not pid_alive(pid), 15)
    with open(path, "w") as f:
        f.write("<VirtualBox xmlns='http://www.virtualbox.org/'><Machine")
    c = connect()
    try:
        (m,) = c.virtualbox.machines
        assert m.id == mid and not m.accessible and m.name == mid
        assert path in m.access_error.text
        with pytest.raises(VBoxError):
            m.memory_size  # noqa: B018
        m.unregister(CleanupMode.UnregisterOnly)
        assert c.virtualbox.machines == []
    finally:
        pid = c.service_pid
        c.close()
        assert wait_for(lambda: not pid_alive(pid), 15)
