"""The command server behind the native `vboxmanage` launcher (launcher.c): the CLI's modules stay
imported in one resident process per user and context, and each run is a fork of it.

A fresh `vboxmanage` spends most of its time starting the interpreter and importing; the server pays
that once. The launcher connects to the server's unix socket and sends its argv, environment, umask,
signal mask and ignored signals, with its open file descriptors and its working directory (an fd)
attached (SCM_RIGHTS). The server forks a child per request; the child makes itself what a direct
start would be (the same fds at the same numbers, cwd, umask, environment, sys.argv, sys.std*
streams, signal dispositions) and runs `frontends.vboxmanage.main` exactly as the direct start does.
It keeps no state of its own between runs: only imported code. Everything that a request cannot
carry (uid, groups, namespaces, root, limits, the interpreter and its search path, the locale
variables) is part of the key the launcher names the socket by, so a server only ever serves
callers whose fresh process would be the same as the server's.

Replies are 16-byte records (4-byte tag, two int32, padding): `PID ` (the child, from the child),
`RUN ` (the child is set up: from now on the command runs), `FAIL` (set-up failed: the launcher
starts directly), `STAL` (the server's code changed on disk: start directly, a new server follows),
`EXIT` (kind 0 = exit code, 1 = killed by signal; value). The server exits after an idle time
(VBOXPY_CMDSERVER_IDLE_S, default 60 s) without requests or children.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import select
import signal
import socket
import struct
import sys
import time

MAGIC = b"VBXR"
PROTOCOL = 1
# magic, version, body length, argc, envc, nfds, umask, 0, ignored signals, blocked signals
HEADER = struct.Struct("=4sIIIIIIIQQ")
REPLY = struct.Struct("=4siii")
MAX_BODY = 8 << 20        # argv + environment (Linux caps both together near this)
MAX_FDS = 250             # SCM_RIGHTS' own limit is 253 per message
REQUEST_TIMEOUT_S = 5.0   # a client that connects and says nothing is dropped after this
IDLE_S = 60.0
PRELOAD = (
    "frontends.vboxmanage.main", "frontends.vboxmanage.api", "frontends.vboxmanage.fetch",
    "frontends.vboxmanage.listing", "frontends.vboxmanage.render_list", "frontends.vboxmanage.showvminfo",
    "frontends.vboxmanage.vminfo", "frontends.vboxmanage.render_vminfo",
    "frontends.vboxmanage.render_snapshot",
    "frontends.vboxmanage.extradata", "vboxsvc.ipc.client", "vboxsvc.ipc.autostart", "vboxsvc.ipc.proxy",
)
CATCHABLE = [s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP) and s < 32]


class Start:
    """What this interpreter looked like when it started, before the server changed anything: the
    state every child restores (a direct start of the same interpreter would have it)."""

    def __init__(self):
        self.handlers = {s: signal.getsignal(s) for s in CATCHABLE}
        self.added_env = _added_at_start()   # e.g. LC_CTYPE set by the interpreter's locale coercion
        self.direct_code = ""                # the launcher's `-c` program for a direct start


def _added_at_start() -> dict[bytes, bytes]:
    try:
        with open("/proc/self/environ", "rb") as handle:
            raw = handle.read().split(b"\0")
    except OSError:
        return {}
    original = {}
    for entry in raw:
        key, eq, value = entry.partition(b"=")
        if eq:
            original.setdefault(key, value)
    return {k: v for k, v in os.environb.items() if original.get(k) != v}


# --------------------------------------------------------------------------------- stale code
def module_files() -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of the source of every module imported now."""
    seen = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path not in seen:
            try:
                st = os.stat(path)
            except OSError:
                continue
            seen[path] = (st.st_mtime_ns, st.st_size)
    return seen


def changed(files: dict[str, tuple[int, int]]) -> bool:
    for path, stamp in files.items():
        try:
            st = os.stat(path)
        except OSError:
            return True
        if (st.st_mtime_ns, st.st_size) != stamp:
            return True
    return False


# --------------------------------------------------------------------------------- requests
class Request:
    def __init__(self, head: tuple, body: bytes, fds: list[int]):
        _, _, _, argc, envc, nfds, self.umask, _, self.ignored, self.mask = head
        parts = body.split(b"\0")
        if len(parts) < argc + envc + 1 or argc < 1:
            raise ValueError("short request")
        self.argv = parts[:argc]
        self.env = parts[argc:argc + envc]
        rest = b"\0".join(parts[argc + envc:])
        if len(rest) != 4 * nfds or len(fds) != nfds or nfds < 1:
            raise ValueError("descriptor list does not match")
        targets = array.array("i")
        targets.frombytes(rest)
        self.targets = list(targets)    # -1: the working directory; else the fd number to give it
        self.fds = fds


class Client:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.data = bytearray()
        self.fds: list[int] = []
        self.deadline = time.monotonic() + REQUEST_TIMEOUT_S
        self.child = 0

    def close(self) -> None:
        for fd in self.fds:
            _close(fd)
        self.fds = []
        self.sock.close()


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def send(sock: socket.socket, tag: bytes, a: int = 0, b: int = 0) -> None:
    try:
        sock.send(REPLY.pack(tag, a, b, 0), socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
    except OSError:
        pass


class Server:
    def __init__(self, path: str, lock_path: str, start: Start):
        self.path, self.lock_path, self.start = path, lock_path, start
        self.clients: dict[int, Client] = {}
        self.children: dict[int, Client] = {}
        self.listener: socket.socket | None = None
        self.lock_fd = -1
        self.inode = None
        self.idle_s = float(os.environ.get("VBOXPY_CMDSERVER_IDLE_S") or IDLE_S)
        self.last = time.monotonic()
        self.stopping = False
        self.files: dict[str, tuple[int, int]] = {}

    # ---- life
    def open(self) -> bool:
        self.lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False     # another server of this key runs (or starts)
        for name in PRELOAD:
            try:
                __import__(name)
            except Exception:  # noqa: BLE001 - a module that cannot load is loaded (and fails) per run
                pass
        self.files = module_files()
        try:
            os.unlink(self.path)   # a server killed before it could clean up (we hold the lock)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            listener.bind(self.path)
        finally:
            os.umask(old)
        listener.listen(64)
        listener.setblocking(False)
        self.listener = listener
        self.inode = os.stat(self.path).st_ino
        return True

    def retire(self) -> None:
        """Stop taking requests: the socket goes, the lock is free for a successor; children still run."""
        if self.listener is not None:
            try:
                if os.stat(self.path).st_ino == self.inode:
                    os.unlink(self.path)
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        if self.lock_fd >= 0:
            _close(self.lock_fd)
            self.lock_fd = -1

    def run(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._term)
        signal.signal(signal.SIGINT, self._term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        while True:
            self._reap()
            if self.stopping and self.listener is not None:
                self.retire()
            now = time.monotonic()
            if self.listener is None and not self.children:
                break
            if not self.clients and not self.children and now - self.last >= self.idle_s:
                break
            poller = select.poll()
            poller.register(wake_r, select.POLLIN)
            if self.listener is not None:
                poller.register(self.listener, select.POLLIN)
            for fd in self.clients:
                poller.register(fd, select.POLLIN)
            timeout = self.idle_s - (now - self.last)
            for client in self.clients.values():
                if not client.child:
                    timeout = min(timeout, client.deadline - now)
            try:
                events = poller.poll(max(0.0, timeout) * 1000 + 1)
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == wake_r:
                    try:
                        while os.read(wake_r, 512):
                            pass
                    except OSError:
                        pass
                elif self.listener is not None and fd == self.listener.fileno():
                    self._accept()
                elif fd in self.clients:
                    self._readable(self.clients[fd])
            now = time.monotonic()
            for client in list(self.clients.values()):
                if not client.child and now > client.deadline:
                    self._drop(client)
        self.retire()

    def _term(self, *_):
        self.stopping = True

    # ---- connections
    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            try:
                cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                _, uid, _ = struct.unpack("3i", cred)
            except OSError:
                sock.close()
                continue
            if uid != os.getuid():
                sock.close()
                continue
            sock.setblocking(False)
            self.clients[sock.fileno()] = Client(sock)
            self.last = time.monotonic()

    def _drop(self, client: Client) -> None:
        self.clients.pop(client.sock.fileno(), None)
        client.close()

    def _readable(self, client: Client) -> None:
        try:
            data, anc, flags, _ = client.sock.recvmsg(65536, socket.CMSG_SPACE(MAX_FDS * 4))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, anc, flags = b"", [], 0
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(payload[: len(payload) - len(payload) % 4])
                client.fds.extend(got)
        if client.child:
            if not data:   # the launcher is gone (killed): its command goes with it
                try:
                    os.kill(client.child, signal.SIGKILL)
                except OSError:
                    pass
                self.clients.pop(client.sock.fileno(), None)
            return
        if not data or flags & socket.MSG_CTRUNC or len(client.fds) > MAX_FDS:
            self._drop(client)
            return
        client.data += data
        if len(client.data) < HEADER.size:
            return
        head = HEADER.unpack_from(client.data)
        if head[0] != MAGIC or head[1] != PROTOCOL or head[2] > MAX_BODY or head[5] > MAX_FDS:
            self._drop(client)
            return
        if len(client.data) < HEADER.size + head[2]:
            return
        if len(client.data) > HEADER.size + head[2]:
            self._drop(client)
            return
        try:
            request = Request(head, bytes(client.data[HEADER.size:]), client.fds)
        except ValueError:
            self._drop(client)
            return
        self._serve(client, request)

    def _serve(self, client: Client, request: Request) -> None:
        self.last = time.monotonic()
        if changed(self.files):
            self.stopping = True
            self.retire()   # first: the launcher told `stale` may start the successor at once
            send(client.sock, b"STAL")
            self._drop(client)
            return
        try:
            pid = os.fork()
        except OSError:   # no process to be had now: the launcher starts directly
            self._drop(client)
            return
        if pid == 0:
            try:
                keep = client.sock.fileno()
                Child(self.start, request, keep).run()
            finally:
                os._exit(255)
        for fd in client.fds:
            _close(fd)
        client.fds = []
        client.child = pid
        self.children[pid] = client

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            client = self.children.pop(pid, None)
            if client is None:
                continue
            if os.WIFSIGNALED(status):
                send(client.sock, b"EXIT", 1, os.WTERMSIG(status))
            else:
                send(client.sock, b"EXIT", 0, os.waitstatus_to_exitcode(status))
            self._drop(client)
            self.last = time.monotonic()


# --------------------------------------------------------------------------------- the child
class Child:
    """A forked server made into the direct start of one command."""

    def __init__(self, start: Start, request: Request, conn: int):
        self.start, self.request, self.conn = start, request, conn

    def run(self) -> None:
        signal.set_wakeup_fd(-1)
        for sig in CATCHABLE:   # quiet until the command's own dispositions are set
            signal.signal(sig, signal.SIG_DFL)
        self.conn = _move_high(self.conn, 1 << 20)
        _reply(self.conn, b"PID ", os.getpid())
        try:
            self._setup()
        except Exception as exc:  # noqa: BLE001 - anything: the launcher starts directly instead
            _reply(self.conn, b"FAIL", getattr(exc, "errno", 0) or 0)
            os._exit(255)
        _reply(self.conn, b"RUN ", os.getpid())
        _close(self.conn)
        signal.pthread_sigmask(signal.SIG_SETMASK, _signals(self.request.mask))
        _run_main()

    def _setup(self) -> None:
        req = self.request
        # the caller's fds at their numbers, the caller's cwd; nothing of the server's stays open
        high = max([*req.targets, 2]) + 1
        moved = [(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, high + 64), target)
                 for fd, target in zip(req.fds, req.targets, strict=True)]
        self.conn = fcntl.fcntl(self.conn, fcntl.F_DUPFD_CLOEXEC, high + 64)
        keep = {self.conn, *(fd for fd, _ in moved)}
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd not in keep:
                _close(fd)
        for fd, target in moved:
            if target < 0:
                os.fchdir(fd)
            else:
                os.dup2(fd, target, inheritable=True)
            os.close(fd)
        os.umask(req.umask)
        environ = os.environb
        environ.clear()
        for entry in req.env:
            key, eq, value = entry.partition(b"=")
            if eq and key not in environ:
                environ[key] = value
        for key, value in self.start.added_env.items():
            environ[key] = value
        if "time" in sys.modules:
            sys.modules["time"].tzset()
        if "random" in sys.modules:
            sys.modules["random"].seed()
        argv = [os.fsdecode(a) for a in req.argv]
        sys.argv = argv
        sys.orig_argv = [sys.executable, "-IS", "-c", self.start.direct_code, *argv]
        _stdio()
        for sig in CATCHABLE:
            if sig in _signals(req.ignored):
                signal.signal(sig, signal.SIG_IGN)
            else:
                handler = self.start.handlers.get(sig)
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _signals(bits: int) -> set[int]:
    return {s for s in range(1, 64) if bits & (1 << (s - 1)) and s in signal.valid_signals()}


def _move_high(fd: int, low: int) -> int:
    try:
        new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
    except OSError:
        return fd
    return new


def _reply(fd: int, tag: bytes, a: int = 0) -> None:
    try:
        os.write(fd, REPLY.pack(tag, a, 0, 0))
    except OSError:
        pass


def _stdio() -> None:
    """sys.stdin/stdout/stderr as the interpreter makes them at start (Python/pylifecycle.c create_stdio)."""
    import io

    streams = []
    for fd, name, mode, old in ((0, "<stdin>", "r", sys.__stdin__), (1, "<stdout>", "w", sys.__stdout__),
                                (2, "<stderr>", "w", sys.__stderr__)):
        try:
            os.fstat(fd)
        except OSError:
            streams.append(None)
            continue
        buffer = open(fd, mode + "b", -1, closefd=False)
        buffer.raw.name = name
        line = buffer.raw.isatty() or fd == 2
        encoding = old.encoding if old is not None else sys.getfilesystemencoding()
        errors = old.errors if old is not None else ("backslashreplace" if fd == 2 else "strict")
        write_through = old.write_through if old is not None else False
        stream = io.TextIOWrapper(buffer, encoding, errors, "\n", line, write_through)
        stream.mode = mode
        streams.append(stream)
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams


def _run_main() -> None:
    """The direct start's `from frontends.vboxmanage.main import main; main()`, ending as the
    interpreter would end it (main itself ends with os._exit)."""
    code = 1
    try:
        from frontends.vboxmanage.main import main

        main()
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        _flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:  # noqa: BLE001 - printed as the interpreter prints an uncaught exception
        sys.excepthook(*sys.exc_info())
    import atexit

    atexit._run_exitfuncs()   # what the interpreter runs at its end (main's own os._exit skips both)
    _flush()
    os._exit(code)


def _exit_code(value) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    try:
        sys.stderr.write(f"{value}\n")
    except Exception:  # noqa: BLE001
        pass
    return 1


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: BLE001
            pass


def serve(argv: list[str] | None = None) -> None:
    """Entry point: `serve([socket path, lock path, direct-start program])`, started by the launcher."""
    start = Start()
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3:
        sys.exit(2)
    start.direct_code = args[2]
    server = Server(args[0], args[1], start)
    try:
        if not server.open():
            return
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.ENOENT, errno.EACCES):
            raise
        return
    server.run()
