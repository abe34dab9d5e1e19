"""A user's world with VirtualBox's defaults, for integration tests: the normal way to run vboxpy.

`World` runs the real CLI, scripts and whatever else a test needs as a user would: a fresh HOME,
no VBOX_USER_HOME, no XDG_CONFIG_HOME, its own XDG_RUNTIME_DIR (so the bus of this world is its
own), and everything it starts (clients, the service, VM processes) reaped at the end, whether
the test passed or not. Three kinds:

- `World.ordinary(user)`: an ordinary user (VirtualBox's home comes from $HOME);
- `World.root()`: root, whose home VirtualBox takes from the account database whatever $HOME
  says. The world runs in a private mount namespace with a scratch folder mounted over root's
  home folder (pyenv's interpreter bound back inside), so the real ~/.config/VirtualBox and
  ~/VirtualBox VMs are never touched. Paths under the home are seen only from inside: use
  `inside()` to look at them, or keep files in `base` (same path inside and out).
- `World.current()`: whoever runs the tests (root: `root()`).

`World.with_home(path)` sets VBOX_USER_HOME, for tests about that variable.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUEST = Path(os.environ.get("VBOXPY_GUEST_CACHE") or ROOT / ".cache" / "guest")
MARK = "VBOXPY_TEST_WORLD"   # every process of a world inherits it: that is how reap() finds them
CLEARED = ("VBOX_USER_HOME", "XDG_CONFIG_HOME", "VBOXPY_RUNTIME_DIR", "VBOXPY_VM_PROCESS",
           "VBOXPY_LAUNCH_TOKEN", "VBOX_USER_LOGHOME")


class WorldUnavailable(Exception):
    """This kind of world cannot be made on this machine (the text says why)."""


def pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (its reaper can be slow: the service's parent is init) is dead."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] not in "ZX"
    except OSError:
        return False


class World:
    def __init__(self, base: Path, home: Path, env: dict[str, str], prefix: list[str], python: str,
                 owner: tuple[int, int] | None = None):
        self.base, self.home, self.env, self.prefix, self.python = base, home, env, prefix, python
        self.owner = owner
        self.holder: subprocess.Popen | None = None

    # --- making worlds -------------------------------------------------------------------------
    @staticmethod
    def _base() -> Path:
        # ipc:// endpoints must stay short (108 bytes): keep the world in /tmp
        base = Path(tempfile.mkdtemp(prefix="vbw", dir="/tmp"))
        for d in ("home", "run"):
            (base / d).mkdir(mode=0o700)
        return base

    @staticmethod
    def _env(base: Path, home: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in CLEARED}
        env.update(HOME=str(home), XDG_RUNTIME_DIR=str(base / "run"), PYTHONPATH=str(ROOT),
                   VBOXSVC_SHUTDOWN_DELAY_MS="1000")
        env[MARK] = str(base)
        return env

    @classmethod
    def current(cls, home: Path | None = None) -> World:
        """The user running the tests; HOME is `home` if given, else a fresh folder."""
        return cls.root(home) if os.geteuid() == 0 else cls.plain(home)

    @classmethod
    def plain(cls, home: Path | None = None) -> World:
        """The calling (non-root) user with a scratch HOME."""
        base = cls._base()
        home = Path(home or base / "home")
        return cls(base, home, cls._env(base, home), [], sys.executable)

    @classmethod
    def root(cls, home: Path | None = None) -> World:
        if os.geteuid() != 0:
            raise WorldUnavailable("needs root")
        if shutil.which("unshare") is None or shutil.which("nsenter") is None:
            raise WorldUnavailable("unshare/nsenter (util-linux) are not installed")
        real_home = Path(pwd.getpwuid(0).pw_dir)
        base = cls._base()
        scratch = base / "roothome"
        scratch.mkdir(mode=0o700)
        binds = []
        # what the world needs from root's home stays visible: the interpreter (pyenv), the checkout,
        # the guest
        tops = {real_home / Path(os.path.realpath(p)).relative_to(real_home).parts[0]
                for p in (sys.executable, ROOT, GUEST) if real_home in Path(os.path.realpath(p)).parents}
        for top in sorted(tops):
            (scratch / top.name).mkdir()
            binds.append(f"mount --rbind {_q(top)} {_q(scratch / top.name)}")
        binds.append(f"mount --rbind {_q(scratch)} {_q(real_home)}")
        holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sleep", "infinity"],
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        home = Path(home or base / "home")
        world = cls(base, home, cls._env(base, home),
                    ["nsenter", "-t", str(holder.pid), "-m", "--"], sys.executable)
        world.holder = holder
        world.root_home = real_home
        world.scratch_home = scratch
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{holder.pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            if holder.poll() is not None or time.monotonic() > deadline:
                world.cleanup()
                raise WorldUnavailable("cannot make a private mount namespace (unshare -m failed)")
            time.sleep(0.01)
        setup = world.run(["sh", "-c", " && ".join(binds)])
        if setup.returncode != 0:
            world.cleanup()
            raise WorldUnavailable(f"cannot mount a scratch home over {real_home}: {setup.stderr.strip()}")
        return world

    @classmethod
    def ordinary(cls, user: str, python: str) -> World:
        """`user` (an account without login) runs everything, through setpriv, with `python`."""
        pw = pwd.getpwnam(user)
        base = cls._base()
        for p in (base, base / "home", base / "run"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        env = cls._env(base, base / "home")
        env.update(USER=user, LOGNAME=user, PATH="/usr/local/bin:/usr/bin:/bin")
        prefix = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--"]
        return cls(base, base / "home", env, prefix, python, owner=(pw.pw_uid, pw.pw_gid))

    def with_home(self, path: str | Path) -> World:
        self.env["VBOX_USER_HOME"] = str(path)
        return self

    # --- running things ------------------------------------------------------------------------
    def cmd(self, argv: list[str], cwd=None) -> list[str]:
        """The command line that runs `argv` in the world, in `cwd` as the world sees it."""
        prefix = list(self.prefix)
        if self.holder is not None:  # change directory inside the namespace
            prefix.insert(prefix.index("--"), f"--wd={cwd or self.base}")
        return prefix + [str(a) for a in argv]

    def _cwd(self, cwd) -> str:
        return str(self.base if self.holder is not None else (cwd or self.base))

    def run(self, argv: list[str], timeout: float = 300, env: dict | None = None, cwd=None, **kw):
        return subprocess.run(self.cmd(argv, cwd), env=env or self.env, cwd=self._cwd(cwd),
                              capture_output=True, text=True, timeout=timeout, **kw)

    def popen(self, argv: list[str], env: dict | None = None, cwd=None, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.cmd(argv, cwd), env=env or self.env, cwd=self._cwd(cwd), **kw)

    def vbm(self, *args, check: int | None = None, timeout: float = 300, cwd=None) -> tuple[int, str, str]:
        proc = self.run([self.python, "-m", "frontends.vboxmanage.main", *args], timeout=timeout, cwd=cwd)
        if check is not None:
            assert proc.returncode == check, (args, proc.returncode, proc.stdout, proc.stderr)
        return proc.returncode, proc.stdout, proc.stderr

    def py(self, code: str, timeout: float = 120, cwd=None) -> subprocess.CompletedProcess:
        return self.run([self.python, "-c", code], timeout=timeout, cwd=cwd)

    def machinereadable(self, vm: str) -> dict:
        out = self.vbm("showvminfo", vm, "--machinereadable", check=0)[1]
        pairs = {}
        for line in out.splitlines():
            key, _, value = line.partition("=")
            if value.startswith('"'):
                pairs[key.strip('"')] = value[1:-1]
            else:  # numbers are unquoted; `VRDEClients==0` is VBoxManage's own quirk
                pairs[key.strip('"')] = int(value.lstrip("="))
        return pairs

    def inside(self, path: str | Path) -> Path:
        """Where a path the world's processes see lives for the test process."""
        p = Path(path)
        home = getattr(self, "root_home", None)
        if home is not None and (p == home or home in p.parents):
            return self.scratch_home / p.relative_to(home)
        return p

    def give(self, path: Path) -> Path:
        """Hand a file or folder the test made to the world's user."""
        if self.owner is not None:
            for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
                os.chown(p, *self.owner)
        return path

    # --- processes -----------------------------------------------------------------------------
    def processes(self) -> list[int]:
        """Every live process started in this world (clients, the service, VM processes)."""
        mark = f"{MARK}={self.base}".encode()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if mark in f.read().split(b"\0") and pid_alive(int(entry)):
                        found.append(int(entry))
            except OSError:
                continue
        return found

    def services(self) -> list[int]:
        """The vboxsvc processes of this world."""
        pids = []
        for pid in self.processes():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            # started by a client: python3 -S -P -c "from vboxsvc.server.main import main; ..."
            if any(b"vboxsvc.server.main" in a for a in argv[:5]) or any(
                    a.endswith((b"/vboxsvc", b"/VBoxSVC")) for a in argv[:2]):
                pids.append(pid)
        return pids

    def reap(self, grace: float = 5.0) -> list[int]:
        """SIGTERM every process of the world, SIGKILL what is left after `grace`; returns who was found."""
        found = self.processes()
        for pid in found:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(pid_alive(p) for p in found) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.processes():
            _signal(pid, signal.SIGKILL)
        return found

    def cleanup(self) -> None:
        """Reap the world's processes, drop its namespace, remove its files."""
        self.reap()
        if self.holder is not None:
            self.holder.kill()
            self.holder.wait()
            self.holder = None
        shutil.rmtree(self.base, ignore_errors=True)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT if sig == signal.SIGKILL else 0)
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _q(p) -> str:
    import shlex
    return shlex.quote(str(p))


# --- an ordinary user for tests ----------------------------------------------------------------
def make_user() -> tuple[str | None, str]:
    """(name, '') of a new account without privileges, login or home for a test to run as (remove it
    with `remove_user`); (None, reason) where no account can be made."""
    if os.geteuid() != 0:
        return None, "creating a user for the test needs root"
    if shutil.which("useradd") is None or shutil.which("setpriv") is None:
        return None, "useradd or setpriv is not installed"
    name = f"vbxt{os.getpid()}"
    group = ["--gid", "nogroup"] if _has_group("nogroup") else ["--user-group"]
    made = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                           "--shell", "/usr/sbin/nologin", *group, name], capture_output=True, text=True)
    if made.returncode != 0:
        return None, f"useradd failed: {made.stderr.strip()}"
    return name, ""


def remove_user(name: str) -> None:
    subprocess.run(["userdel", name], capture_output=True)


def _has_group(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def user_python(user: str) -> tuple[str | None, str]:
    """An interpreter with vboxpy's dependencies that `user` can run (scripts/python.sh's choice)."""
    pw = pwd.getpwnam(user)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent"}
    out = subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--",
                          str(ROOT / "scripts" / "python.sh")], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        return None, (f"no Python with vboxpy's dependencies that the user {user} can run "
                      f"(scripts/install.sh makes /opt/vboxpy/venv): {out.stderr.strip()}")
    return out.stdout.strip(), ""
