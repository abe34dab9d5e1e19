"""The service's quick start (vboxsvc/server/quickstart.py) as a user meets it: real CLI, real
service, VirtualBox's default home.

A service started when nothing changed since the last full read answers the machine list from a
quick view while it reads the settings; the list must be the one the full read gives, the objects
handed out must become the real ones, and a file changed since must be read in full first.
"""

from __future__ import annotations

import os
import signal
import time

QUICK = "from the quick view"   # what VBoxSVC.log says when the quick start is taken


def _stop(world) -> None:
    for pid in world.services():
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while world.services() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not world.services()


def _log(world) -> str:
    """This service run's log (VBoxSVC.log is rolled over at each start)."""
    return "".join(p.read_text(errors="replace") for p in world.base.rglob("VBoxSVC.log"))


SCRIPT = """
from vboxsvc.ipc.client import connect
c = connect()
vbox = c.virtualbox
machines = vbox.machines
names = [m.name for m in machines]
memory = [m.memory_size for m in machines]          # beyond the quick view: waits for the full read
same = [vbox.find_machine(n) == m for n, m in zip(names, machines)]
names_again = [m.name for m in machines]
print(names, memory, same, names_again == names)
c.close()
"""


def test_the_first_list_after_a_start_is_the_full_reads_list(world):
    for name in ("alpha", "beta", "Gamma delta"):
        world.vbm("createvm", "--name", name, "--register", check=0)
    _stop(world)
    # VirtualBox.xml touched by someone else since the service's exit: read in full first
    (main,) = [p for p in world.base.rglob("VirtualBox.xml") if p.parent.name == "VirtualBox"]
    os.utime(main)
    full = world.vbm("list", "vms", check=0)[1]
    assert QUICK not in _log(world)
    _stop(world)
    quick = world.vbm("list", "vms", check=0)[1]
    assert QUICK in _log(world)
    assert quick == full and full.count("\n") == 3
    _stop(world)
    sorted_quick = world.vbm("list", "vms", "--sorted", check=0)[1]
    assert QUICK in _log(world)
    assert sorted_quick.splitlines() == sorted(full.splitlines(), key=str.lower)
    _stop(world)
    # a script's references from the quick view go on working, as the real machines
    proc = world.py(SCRIPT)
    assert proc.returncode == 0, proc.stderr
    assert QUICK in _log(world)
    assert proc.stdout.strip() == ("['alpha', 'beta', 'Gamma delta'] [128, 128, 128] [True, True, True] True")
    # a command beyond the quick view on a fresh start waits for the full read and answers
    _stop(world)
    code, out, err = world.vbm("showvminfo", "beta", "--machinereadable")
    assert code == 0 and 'name="beta"' in out, err
    _stop(world)
    code, out, err = world.vbm("list", "runningvms")
    assert code == 0 and out == "", err


def test_a_machine_file_changed_since_is_read_in_full_first(world):
    world.vbm("createvm", "--name", "fine", "--register", check=0)
    world.vbm("createvm", "--name", "broken", "--register", check=0)
    cfg = world.machinereadable("broken")["CfgFile"]
    uuid = world.machinereadable("broken")["UUID"]
    _stop(world)
    world.vbm("list", "vms", check=0)                 # the full read leaves the record
    _stop(world)
    assert QUICK in (world.vbm("list", "vms", check=0), _log(world))[1]
    _stop(world)
    # well-formed XML, name and UUID intact, but settings the full read refuses
    path = world.inside(cfg)
    text = path.read_text()
    start = text.index('lastStateChange="') + len('lastStateChange="')
    path.write_text(text[:start] + "yesterday" + text[text.index('"', start):])
    out = world.vbm("list", "vms", check=0)[1]
    assert QUICK not in _log(world)
    assert out.splitlines()[1] == f'"<inaccessible>" {{{uuid}}}', out
    _stop(world)
    # the record keeps it inaccessible while the file stays as it is: the next start is quick again
    assert world.vbm("list", "vms", check=0)[1] == out
    assert QUICK in _log(world)
    _stop(world)
    path.write_text(text)                             # mended: read in full, accessible again
    assert world.vbm("list", "vms", check=0)[1].splitlines()[1].startswith('"broken" {')
    assert QUICK not in _log(world)


def test_changes_the_service_made_are_recorded_at_its_exit(world):
    world.vbm("createvm", "--name", "old name", "--register", check=0)
    world.vbm("createvm", "--name", "other", "--register", check=0)
    world.vbm("modifyvm", "old name", "--name", "new name", check=0)
    world.vbm("modifyvm", "other", "--memory", "256", check=0)
    _stop(world)   # the files it wrote are read again and recorded as it exits
    out = world.vbm("list", "vms", check=0)[1]
    assert QUICK in _log(world)
    assert [line.split(" {")[0] for line in out.splitlines()] == ['"new name"', '"other"']
    # a service killed after a change leaves the record of the files before it: read in full
    world.vbm("modifyvm", "other", "--name", "renamed", check=0)
    for pid in world.services():
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while world.services() and time.monotonic() < deadline:
        time.sleep(0.02)
    out = world.vbm("list", "vms", check=0)[1]
    assert QUICK not in _log(world)
    assert [line.split(" {")[0] for line in out.splitlines()] == ['"new name"', '"renamed"']


def test_hostile_frames_while_the_quick_view_answers(tmp_path):
    """Signed frames the quick view cannot answer (a body that is no map, a member that is no
    string) are answered or dropped as usual, without a traceback; the service goes on."""
    import msgpack
    import zmq

    from vboxsvc.ipc import autostart, paths
    from vboxsvc.ipc.client import connect
    from vboxsvc.ipc.wire import sign

    from .conftest import make_env, stop_service

    env = make_env()
    saved = {k: os.environ.get(k) for k in ("VBOX_USER_HOME", "VBOXPY_RUNTIME_DIR")}
    os.environ.update(VBOX_USER_HOME=str(env.home), VBOXPY_RUNTIME_DIR=str(env.run))
    try:
        c = connect()
        vbox = c.virtualbox
        vbox.system_properties.default_machine_folder = str(env.vms)
        for name in ("a", "b"):
            m = vbox.create_machine(vbox.compose_machine_filename(name, "", "", ""), name, 1, [],
                                    "Linux_64", "")
            m.save_settings()
            vbox.register_machine(m)
        pid = c.service_pid
        c.close()
        stop_service(pid)                       # leaves the record at its exit
        autostart.ensure_service()
        key = paths.load_key(create=False)
        ctx = zmq.Context()
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(paths.endpoint())
        sid, seq = os.urandom(16), iter(range(1, 100))

        def frame(payload) -> list[bytes]:
            if isinstance(payload, dict):
                payload = dict(payload, s=sid, c=0, q=next(seq), t=int(time.time() * 1000))
            return sign(key, msgpack.packb(payload, use_bin_type=True))

        def ask(payload, timeout_ms=3000):
            s.send_multipart(frame(payload))
            if not s.poll(timeout_ms):
                return None
            (answer,) = s.recv_multipart()
            return msgpack.unpackb(answer[:-32], raw=False, ext_hook=msgpack.ExtType)

        hello = ask({"op": "hello", "i": 1, "pid": os.getpid()})
        assert hello["op"] == "ret"
        quick_vbox = hello["r"]["vbox"]
        assert ask(["not", "a", "map"], timeout_ms=300) is None          # dropped
        r = ask({"op": "call", "i": 2, "o": quick_vbox, "k": 1, "m": ["machines"], "a": []})
        assert r is not None and r["op"] == "err", r
        r = ask({"op": "call", "i": 3, "o": quick_vbox, "k": 1, "m": "machines", "a": []})
        assert r is not None and r["op"] == "ret" and len(r["r"]) == 2, r
        s.close(0)
        ctx.term()
        c = connect()
        assert sorted(m.name for m in c.virtualbox.machines) == ["a", "b"]
        pid = c.service_pid
        c.close()
        stop_service(pid)
        log = "".join(p.read_text(errors="replace") for p in env.home.glob("VBoxSVC.log"))
        assert QUICK in log and "Traceback" not in log, log
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
