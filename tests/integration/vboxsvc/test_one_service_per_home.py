"""One service per user and VirtualBox home, however the home is spelled.

Clients that reach the same folder as VirtualBox's default (VBOX_USER_HOME unset), through the
variable set to the resolved path, to a relative path, or to a symlink, and the VM process the
service starts (which gets VBOX_USER_HOME from the service), all meet one service; a second
service for that home never runs, not even for a client whose runtime folder differs. A different folder gets
its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

FAKE_VM = Path(__file__).resolve().parent / "fake_vm.py"

HOLD = """
import sys, time
from vboxsvc.ipc.client import connect
c = connect()
print(c.service_pid, c.virtualbox.home_folder, flush=True)
sys.stdin.read()          # stay connected until the test closes our stdin
c.close()
"""


def _client(world, env_home: str | None, cwd=None):
    env = dict(world.env)
    env.pop("VBOX_USER_HOME", None)
    if env_home is not None:
        env["VBOX_USER_HOME"] = env_home
    import subprocess
    proc = world.popen([world.python, "-c", HOLD], env=env, cwd=cwd, stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split(maxsplit=1)
    assert len(line) == 2, proc.stderr.read() if proc.poll() is not None else line
    return proc, int(line[0]), line[1].strip()


def test_every_spelling_of_one_home_meets_one_service(world):
    world.env["VBOXPY_VM_PROCESS"] = f"{sys.executable} {FAKE_VM}"
    # the default home (VBOX_USER_HOME unset) starts the service
    code, out, err = world.vbm("createvm", "--name", "one", "--register")
    assert code == 0, err
    held = []
    try:
        proc, pid, home = _client(world, None)
        held.append(proc)
        link = world.base / "link"
        link.symlink_to(home)
        relative_base = Path(home).parent
        spellings = [home, str(link), str(link) + "/", "./" + Path(home).name]
        for spelling in spellings:
            cwd = relative_base if spelling.startswith("./") else None
            p, other_pid, other_home = _client(world, spelling, cwd=cwd)
            held.append(p)
            assert other_pid == pid, (spelling, other_home)
        # a client with another runtime folder cannot reach that service, and must not start a second
        run2 = world.base / "run2"
        run2.mkdir(mode=0o700)
        world.give(run2)
        other_env = dict(world.env, XDG_RUNTIME_DIR=str(run2))
        lost = world.run([world.python, "-m", "frontends.vboxmanage.main", "list", "vms"], env=other_env)
        assert lost.returncode == 1 and "Failed to start the VirtualBox service" in lost.stderr, lost
        assert world.services() == [pid]
        # the VM process gets VBOX_USER_HOME=<home> from the service: it must find the same one
        code, out, err = world.vbm("startvm", "one", "--type", "headless")
        assert code == 0, err
        assert world.vbm("list", "runningvms")[1].startswith('"one" {')
        assert world.services() == [pid]
        world.vbm("controlvm", "one", "poweroff", check=0)
        # a different folder is a different home: its own service
        p, other_pid, _ = _client(world, str(world.base / "elsewhere"))
        held.append(p)
        assert other_pid != pid and sorted(world.services()) == sorted([pid, other_pid])
    finally:
        for p in held:
            p.stdin.close()
            p.wait(30)
