"""Bus calls have a bound: a stopped (SIGSTOP) service gives a clear error instead of a hang, and a
client dropped without close() does not hang its process (at garbage collection or exit).

Each case runs as a script in a world with VirtualBox's defaults; the subprocess timeout is the
bound a hanging client would fail.
"""

from __future__ import annotations

import os
import signal
import time

from tests.integration.world import pid_alive

STOPPED = """
import os, signal
from vboxsvc.api import VBoxError
from vboxsvc.ipc.client import connect
c = connect()
os.kill(c.service_pid, signal.SIGSTOP)
try:
    c.virtualbox.machines
    print("answered")
except VBoxError as e:
    print("error:", e.code_name, e.text)
finally:
    os.kill(c.service_pid, signal.SIGCONT)
print("after:", len(c.virtualbox.machines))
c.close()
"""

DROPPED = """
import gc
from vboxsvc.api import VBoxEventType
from vboxsvc.ipc.client import connect

def plain():
    c = connect()
    return c.virtualbox.version

def listening():
    c = connect()
    c.subscribe(lambda ev: None, [VBoxEventType.OnMachineStateChanged])
    return c.virtualbox.version

print(plain())
gc.collect()
print(listening())
gc.collect()
print("collected")
"""

GONE = """
import os, signal, time
from vboxsvc.api import VBoxError
from vboxsvc.ipc.client import connect
c = connect()
m = c.virtualbox.create_machine("", "gone", os_type_id="Linux_64")
os.kill(c.service_pid, signal.SIGKILL)
try:
    m.name
except VBoxError as e:
    print("error:", e.code_name, e.text)
"""

TORN_DOWN = """
import os, signal, threading, time
from vboxsvc.api import VBoxError
from vboxsvc.ipc.client import connect
c = connect()

class Console:
    __interface__ = "IConsole"

c.export(Console())        # a callee channel and a ZeroMQ context, as in the VM process
os.kill(c.service_pid, signal.SIGSTOP)
got = []

def caller():
    try:
        got.append(len(c.virtualbox.machines))
    except VBoxError as e:
        got.append(e.text)

t = threading.Thread(target=caller)
t.start()
time.sleep(0.5)            # the caller is blocked in the socket
start = time.monotonic()
c._teardown()              # as the VM process does to the connection of a service that died
os.kill(c.service_pid, signal.SIGCONT)
t.join(30)
print(got, time.monotonic() - start < 10)
"""


def test_call_to_a_stopped_service_fails_clearly(world):
    out = world.py(STOPPED, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("error: NS_ERROR_CALL_FAILED The VirtualBox service (vboxsvc, pid "), lines
    assert lines[0].endswith(") is stopped and does not answer"), lines
    assert lines[1] == "after: 0"           # once continued, the same connection works again


def test_call_to_a_dead_service_fails_clearly(world):
    out = world.py(GONE, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "error: NS_ERROR_CALL_FAILED The VirtualBox service (vboxsvc) has terminated\n"


def test_client_dropped_without_close_does_not_hang(world):
    out = world.py(DROPPED, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "collected"


def test_teardown_waits_for_a_call_blocked_on_another_thread(world):
    """Closing the call socket under a thread blocked in it aborts the process inside libzmq; the
    teardown waits until the call gives up instead (within a poll interval)."""
    out = world.py(TORN_DOWN, timeout=120)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert out.stdout == "['The client connection is closed'] True\n", out.stdout


def test_a_native_crash_of_the_service_leaves_its_stacks_in_the_log(world):
    """VBoxSVC.log gets every thread's Python stack when the service dies of a fatal signal."""
    out = world.py("from vboxsvc.ipc.client import connect\nprint(connect().service_pid)", timeout=120)
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split()[-1])
    os.kill(pid, signal.SIGSEGV)
    deadline = time.monotonic() + 20
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    logs = "".join(p.read_text(errors="replace") for p in world.base.rglob("VBoxSVC.log*"))
    assert "Fatal Python error: Segmentation fault" in logs
    assert "vboxsvc/ipc/busserver.py" in logs.split("Fatal Python error")[-1]


GOODBYE = """
import glob, os, time
from vboxsvc.ipc import paths
from vboxsvc.ipc.client import connect
c = connect(light=True)             # as vboxmanage connects: it does not wait for the goodbye's answer
pid = os.getpid()
c.close()
deadline = time.monotonic() + 10
while time.monotonic() < deadline:  # this process lives on: only the goodbye can tell the service
    logs = "".join(open(p, errors="replace").read()
                   for p in glob.glob(os.path.join(paths.canonical_home(), "VBoxSVC.log*")))
    if f"gone (pid {pid})" in logs:
        print("heard")
        break
    time.sleep(0.05)
else:
    print("not heard")
"""


def test_a_light_client_goodbye_is_heard_without_waiting_for_its_answer(world):
    out = world.py(GOODBYE, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "heard\n", out.stdout
