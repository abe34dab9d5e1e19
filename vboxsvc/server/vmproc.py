"""launchVMProcess: spawn the VM process, hand it the right to take the VM lock, watch it.

The service starts `vboxheadless --startvm <uuid>` (or `python -m frontends.headless.main`)
detached, with VBOX_USER_HOME kept and VBOXPY_LAUNCH_TOKEN set: only a client showing that
token may take the VM lock while the launch is pending. Its stdout/stderr go to the
machine's Logs/VBox.log (rotated first, keeping LogHistoryCount old logs). The IProgress
completes when the VM process reports Running (or Paused); it fails if the process ends
first. A pidfd tells the service at once when the process exits; a machine still online
then becomes Aborted. `VBOXPY_VM_PROCESS` (a command line) replaces the frontend command,
for tests and alternative frontends.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys

from ..api import errors as rc
from ..api.enums import LockType, MachineState, SessionState, SessionType, is_online
from ..api.errors import VBoxError
from . import reattach
from .context import ctx
from .progress import Progress
from .session import Session

log = logging.getLogger("vboxsvc.vmproc")

# A VM process that neither reaches Running nor exits within this time is killed and its start
# fails: clients waiting on the launch progress are never left waiting on a silent process.
START_TIMEOUT_S = float(os.environ.get("VBOXPY_VM_START_TIMEOUT_S") or 120.0)

FRONTENDS = {"headless": "headless", "capture": "headless", "vrdp": "headless", "": ""}
GUI_FRONTENDS = {"gui", "gui/qt", "separate", "gui/separate", "sdl", "gui/sdl"}


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def frontend_command(uuid: str) -> list[str]:
    override = os.environ.get("VBOXPY_VM_PROCESS")
    if override:
        return shlex.split(override) + ["--startvm", uuid]
    exe = shutil.which("vboxheadless")
    if exe:
        return [exe, "--startvm", uuid]
    return [sys.executable, "-m", "frontends.headless.main", "--startvm", uuid]


def rotate_logs(folder: str, keep: int) -> str:
    """VBox.log -> VBox.log.1 -> ... (VirtualBox keeps LogHistoryCount old logs)."""
    os.makedirs(folder, exist_ok=True)
    base = os.path.join(folder, "VBox.log")
    if keep <= 0:
        for name in os.listdir(folder):
            if name.startswith("VBox.log"):
                os.unlink(os.path.join(folder, name))
        return base
    for i in range(keep, 0, -1):
        src = base if i == 1 else f"{base}.{i - 1}"
        if os.path.exists(src):
            os.replace(src, f"{base}.{i}")
    return base


def apply_environment(env: dict[str, str], changes: list[str]) -> None:
    for item in changes:
        if not item:
            continue
        name, eq, value = item.partition("=")
        if not name:
            raise VBoxError(rc.E_INVALIDARG, f"Invalid environment change '{item}'")
        if eq:
            env[name] = value
        else:
            env.pop(name, None)


class Launch:
    """One VM process started by the service, from spawn to exit."""

    def __init__(self, core, launcher, frontend: str, token: str, progress: Progress):
        self.core = core
        self.launcher = launcher
        self.frontend = frontend
        self.token = token
        self.progress = progress
        self.proc: subprocess.Popen | None = None
        self.pidfd: int | None = None
        self.log_path = ""

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    @property
    def done(self) -> bool:
        return self.progress.completed

    def _fail(self, text: str) -> None:
        """Fail the launch; the last lines the VM process logged say why."""
        if not self.progress.completed:
            tail = _log_tail(self.log_path)
            if tail and tail not in text:
                text += f"\n{tail}"
            self.progress.complete(VBoxError(rc.E_FAIL, text, "IMachine", "MachineWrap"))

    # --- events from the session and the machine -------------------------------------------------
    def vm_locked(self, vm_session) -> None:
        self.progress.set_operation(1)
        s = self.launcher
        if s is not None and s.state == SessionState.Spawning:
            s.state = SessionState.Locked
            s.type = SessionType.Remote
            s.holder = vm_session
            self.core.remotes.append(s)

    def on_state(self, state: MachineState) -> None:
        if self.progress.completed:
            return
        if state in (MachineState.Running, MachineState.Paused):
            self.progress.complete()
        elif not is_online(state) and state not in (MachineState.Starting, MachineState.Restoring):
            self._fail(f"The virtual machine '{self.core.name}' failed to start (it went to state "
                       f"{state.name}). "
                       f"More details may be available in '{self.log_path}'")

    def vm_unlocked(self) -> None:
        self._fail(f"The virtual machine '{self.core.name}' has released its session during startup. More "
                   f"details may be available in '{self.log_path}'")

    def launcher_detached(self) -> None:
        self.launcher = None

    def start_timed_out(self) -> None:
        if self.progress.completed or self.proc is None or self.proc.poll() is not None:
            return
        log.warning("VM process %d of '%s' did not start within %.0f s: killing it", self.pid, self.core.name,
                    START_TIMEOUT_S)
        self._fail(f"The virtual machine '{self.core.name}' did not finish its startup within "
                   f"{START_TIMEOUT_S:.0f} seconds and was terminated.  More details may be available in "
                   f"'{self.log_path}'")
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the VM process leads its own session
        except (ProcessLookupError, PermissionError):
            pass

    # --- the process ---------------------------------------------------------------------------
    def exited(self) -> None:
        core = self.core
        if self.pidfd is not None:
            ctx.bus.unwatch_fd(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None
        code = self.proc.wait() if self.proc is not None else -1
        log.info("VM process %d of '%s' exited with %d", self.pid, core.name, code)
        if not self.progress.completed:
            # Machine::i_checkForSpawnFailure's wording, by how the process ended
            if code < 0:
                how = f"because of signal {-code}"
            else:
                how = f"with exit code {code} ({code:#x})"
            self._fail(f"The virtual machine '{core.name}' has terminated unexpectedly during "
                       f"startup {how}.  "
                       f"More details may be available in '{self.log_path}'")
        direct = core.direct
        if direct is not None and direct.lock_type == LockType.VM and core.vm_client is not None \
                and core.vm_client.pid == self.pid:
            direct._release()  # the process died holding the lock: Aborted
        if self.launcher is not None and self.launcher.state == SessionState.Spawning:
            self.launcher._reset()
        if core.launch is not self:
            return  # a newer launch owns the machine now
        core.launch = None
        if core.direct is None:
            if is_online(core.state) or core.state >= MachineState.FirstTransient:
                core.set_state(MachineState.Aborted)
            core.set_session_state(SessionState.Unlocked)


def _log_tail(path: str, lines: int = 3) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])


def launch_vm_process(core, session, name: str, environment_changes: list[str]):
    if not isinstance(session, Session):
        raise VBoxError(rc.E_INVALIDARG, "Invalid session object")
    key = name.strip().lower()
    if key == "emergencystop":
        return _emergency_stop(core)
    if key in GUI_FRONTENDS:
        raise VBoxError(rc.VBOX_E_NOT_SUPPORTED, f"The frontend '{name}' is not available in vboxpy (only "
                                                 "headless virtual machines are supported)", "IMachine",
                        "MachineWrap")
    if key not in FRONTENDS:
        raise VBoxError(rc.E_INVALIDARG, f"Invalid frontend name: '{name}'", "IMachine", "MachineWrap")
    frontend = FRONTENDS[key] or "headless"
    if session.state != SessionState.Unlocked:
        raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE, "The given session is busy", "IMachine",
                        "MachineWrap")
    if not core.registered:
        raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE, f"The machine '{core.name}' is not registered",
                        "IMachine", "MachineWrap")
    pending = core.launch is not None and not core.launch.done
    if core.direct is not None or pending or core.session_state != SessionState.Unlocked:
        raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE,
                        f"The machine '{core.name}' is already locked by a session (or being locked "
                        f"or unlocked)",
                        "IMachine", "MachineWrap")
    other = reattach.running_elsewhere(core)        # a VM process this service does not know of
    if other is not None:
        raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE,
                        f"The machine '{core.name}' is already locked by a session (the VM process {other} "
                        "runs it)", "IMachine", "MachineWrap")
    if core.state not in (MachineState.PoweredOff, MachineState.Saved, MachineState.Aborted,
                          MachineState.AbortedSaved, MachineState.Teleported):
        from ..api.enums import state_name
        raise VBoxError(rc.VBOX_E_INVALID_VM_STATE,
                        f"The machine is not powered off, saved or aborted (machine "
                                                    f"state: {state_name(core.state)})", "IMachine",
                        "MachineWrap")
    env = dict(os.environ)
    apply_environment(env, environment_changes)
    token = os.urandom(16).hex()
    env["VBOXPY_LAUNCH_TOKEN"] = token
    env["VBOX_USER_HOME"] = str(ctx.vbox.home)
    root = _package_root()
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    progress = Progress(f"Starting virtual machine '{core.name}'", initiator=core.view, cancelable=False,
                        operations=[("Spawning session", 1), ("Starting virtual machine", 9)])
    launch = Launch(core, session, frontend, token, progress)
    try:
        log_path = rotate_logs(str(core.log_folder()), ctx.vbox.system_properties.log_history_count)
        launch.log_path = log_path
        with open(log_path, "ab") as out:
            launch.proc = subprocess.Popen(frontend_command(core.id), stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=subprocess.STDOUT, env=env, cwd=str(core.path.parent),
                                           start_new_session=True)
    except OSError as e:
        raise VBoxError(rc.VBOX_E_IPRT_ERROR,
                        f"Could not launch the VM process for the machine '{core.name}' "
                                              f"({e.strerror})", "IMachine", "MachineWrap") from None
    try:
        launch.pidfd = os.pidfd_open(launch.proc.pid)
        ctx.bus.watch_fd(launch.pidfd, launch.exited)
    except OSError:
        launch.pidfd = None
        _poll_exit(launch)
    ctx.call_later(START_TIMEOUT_S, launch.start_timed_out)
    core.launch = launch
    session.state = SessionState.Spawning
    session.type = SessionType.Remote
    session.core = core
    session.launch = launch
    session.name = frontend
    core.set_session_state(SessionState.Spawning)
    log.info("launched VM process %d for '%s'", launch.pid, core.name)
    return progress


def _poll_exit(launch: Launch) -> None:
    """Fallback without pidfd: check the child every 200 ms."""
    def check():
        if launch.proc.poll() is not None:
            launch.exited()
        else:
            ctx.call_later(0.2, check)
    ctx.call_later(0.2, check)


def _emergency_stop(core):
    pid = 0
    if core.launch is not None and core.launch.proc is not None:
        pid = core.launch.pid
    elif core.vm_client is not None:
        pid = core.vm_client.pid
    if not pid:
        raise VBoxError(rc.VBOX_E_INVALID_VM_STATE, f"The machine '{core.name}' is not running",
                        "IMachine", "MachineWrap")
    progress = Progress(f"Emergency stop of '{core.name}'", initiator=core.view)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    progress.complete()
    return progress
