"""Start the service on demand, as VirtualBox's XPCOM glue starts VBoxSVC.

A client that finds nobody listening on the endpoint takes the spawn lock, looks again,
and if still nobody listens spawns `vboxsvc --automate --inherit-startup-pipe <fd>` (it
daemonizes itself) and blocks until the service writes `READY` on that pipe. Any number of
clients racing end up with one service: the lock serializes spawning, and the service
itself refuses to run twice for one home (it holds its pid file, named after the canonical
home, locked).
`client.connect()` uses the two halves, `begin_service()` and `wait()`, to import the bus
machinery while the service starts.
"""

from __future__ import annotations

import errno
import os
import sys
import time

from . import paths

START_TIMEOUT_S = 20.0
SERVICE_MAIN = "from vboxsvc.server.main import main; raise SystemExit(main())"


def probe(path: str) -> bool:
    """True if something (the service, or systemd holding its socket) listens on the endpoint."""
    import _socket  # the socket module's wrappers cost every client start-up time; nothing here needs them

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
            return False
        raise
    finally:
        s.close()


def service_command() -> list[str]:
    # -S: no site initialisation (every .pth file of site-packages read and run) on the service's
    # start path; it gets the client's module search path through PYTHONPATH instead (_search_path).
    # -P: the client's working folder is not searched. -c rather than -m: runpy costs the start 5 ms.
    return [sys.executable, "-S", "-P", "-c", SERVICE_MAIN]


def _search_path() -> str:
    """This checkout, then the folders this client imports from (its own script folder aside):
    the service runs the same code with the same dependencies, whatever site would have added."""
    root = _package_root()
    out = [root]
    for entry in sys.path[1:]:
        if entry and entry not in out:
            out.append(entry)
    return os.pathsep.join(out)


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ensure_service(timeout: float = START_TIMEOUT_S) -> None:
    starting = begin_service()
    if starting is not None:
        starting.wait(timeout)


_early: list = []   # what start_early() got (the service spawned, or the error), not yet used


def start_early() -> None:
    """Spawn the service now if nobody serves the endpoint; this process's first connection waits
    for it (VBoxManage creates its VirtualBoxClient, which starts VBoxSVC, before it parses the
    command's arguments: a CLI run imports its command's code while the service starts)."""
    if not _early:
        try:
            _early.append(begin_service())
        except Exception as e:  # raised where the connection is made, as without an early start
            _early.append(e)


def begin_service() -> _Starting | None:
    """Spawn the service if nobody serves the endpoint; None if it runs already.

    The caller may do other work (its own imports) while the service starts, then must call
    `wait()`; the spawn lock is held until then, so racing clients still end up with one service.
    """
    if _early and _early[0] is not None:
        early, _early[0] = _early[0], None
        if isinstance(early, Exception):
            raise early
        return early
    path = paths.socket_path()
    if probe(path):
        return None
    lock = open(paths.spawn_lock_path(), "a+")
    try:
        os.chmod(lock.name, 0o600)
        _lock_bounded(lock, START_TIMEOUT_S + 10)  # the holder gives up after START_TIMEOUT_S
        if probe(path):
            lock.close()
            return None
        return _Starting(path, lock)
    except BaseException:
        lock.close()
        raise


def _lock_bounded(lock, timeout: float) -> None:
    """Take the spawn lock, waiting at most `timeout` for a client that is starting the service."""
    from fcntl import LOCK_EX, LOCK_NB, flock  # only a client that may start the service locks

    deadline = time.monotonic() + timeout
    while True:
        try:
            flock(lock, LOCK_EX | LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                from ..api import errors as rc
                raise rc.VBoxError(rc.NS_ERROR_CALL_FAILED,
                                   "Timed out waiting for another client to start the VirtualBox service "
                                   "(vboxsvc)", "IVirtualBoxClient", "VirtualBoxClientWrap") from None
            time.sleep(0.02)


class _Starting:
    """A service being spawned: the READY pipe, the launcher process, the spawn lock."""

    def __init__(self, path: str, lock):
        self.path, self.lock = path, lock
        r, w = os.pipe()
        env = dict(os.environ)
        if env.get("VBOX_USER_HOME"):
            # the service leaves this folder for /: a relative home must mean what it means here
            env["VBOX_USER_HOME"] = os.path.abspath(env["VBOX_USER_HOME"])
        env["PYTHONPATH"] = _search_path()
        try:
            # posix_spawn, not subprocess (whose import costs the client 10 ms); the service closes
            # every other descriptor it inherits as it daemonizes
            os.set_inheritable(w, True)
            self.pid = os.posix_spawn(
                sys.executable, service_command() + ["--automate", "--inherit-startup-pipe", str(w)], env,
                file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDWR, 0),
                              (os.POSIX_SPAWN_DUP2, 0, 1), (os.POSIX_SPAWN_DUP2, 0, 2)],
                setsid=True)
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        self.ready_fd = r

    def wait(self, timeout: float = START_TIMEOUT_S) -> None:
        """Block until the service said READY (or failed); releases the spawn lock."""
        try:
            try:
                got = _read_ready(self.ready_fd, timeout)
            finally:
                os.close(self.ready_fd)
                # the process spawned exits once the daemon has forked: reap it
                _reap(self.pid, 5.0)
            if got == b"READY" or probe(self.path):
                return
        finally:
            self.lock.close()
        from ..api import errors as rc
        raise rc.VBoxError(rc.NS_ERROR_CALL_FAILED,
                           "Failed to start the VirtualBox service (vboxsvc); see VBoxSVC.log in the "
                           "VirtualBox home folder", "IVirtualBoxClient", "VirtualBoxClientWrap")


def _reap(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] or time.monotonic() > deadline:
                return
        except ChildProcessError:
            return
        time.sleep(0.002)


def _read_ready(fd: int, timeout: float) -> bytes:
    import select
    deadline = time.monotonic() + timeout
    data = b""
    while len(data) < 5:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 5 - len(data))
        if not chunk:
            break
        data += chunk
    return data
