"""`vboxsvc` (VBoxSVC): the per-user service process.

Options follow VBoxSVC: -a/--automate (started on demand: daemonize + auto-shutdown),
-A/--auto-shutdown, -d/--daemonize, -D/--shutdown-delay <ms> (default 5000, or
$VBOXSVC_SHUTDOWN_DELAY_MS), -p/--pidfile, -F/--logfile, -R/--logrotate <n>,
-P/--inherit-startup-pipe <fd> (write READY there once serving). Under systemd it adopts
the listening socket passed with LISTEN_FDS/LISTEN_PID and reports READY=1 to
$NOTIFY_SOCKET (Type=notify).
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import logging.handlers
import os
import signal
import socket
import sys
import time

SD_LISTEN_FDS_START = 3
DEFAULT_SHUTDOWN_DELAY_MS = 5000


def parse_args(argv):
    p = argparse.ArgumentParser(prog="vboxsvc", description="The vboxpy service (VBoxSVC).")
    p.add_argument("-a", "--automate", action="store_true",
                   help="started on demand: daemonize, auto-shutdown")
    p.add_argument("-A", "--auto-shutdown", action="store_true", help="exit when the last client is gone")
    p.add_argument("-d", "--daemonize", action="store_true", help="detach from the terminal")
    p.add_argument("-D", "--shutdown-delay", type=int, default=None, metavar="MS",
                   help="idle time before auto-shutdown (default 5000 ms or $VBOXSVC_SHUTDOWN_DELAY_MS)")
    p.add_argument("-p", "--pidfile", default=None)
    p.add_argument("-F", "--logfile", default=None, help="default: VBoxSVC.log in the VirtualBox home")
    p.add_argument("-R", "--logrotate", type=int, default=10, metavar="N")
    p.add_argument("-S", "--logsize", type=int, default=100 * 1024 * 1024, metavar="BYTES")
    p.add_argument("-I", "--loginterval", type=int, default=24 * 3600, metavar="SECONDS")
    p.add_argument("-P", "--inherit-startup-pipe", type=int, default=None, metavar="FD")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.automate:
        args.daemonize = True
        args.auto_shutdown = True
    if args.shutdown_delay is None:
        env = os.environ.get("VBOXSVC_SHUTDOWN_DELAY_MS")
        try:
            args.shutdown_delay = int(env) if env else DEFAULT_SHUTDOWN_DELAY_MS
        except ValueError:
            p.error(f"VBOXSVC_SHUTDOWN_DELAY_MS must be a number of milliseconds, not {env!r}")
    if args.shutdown_delay < 0:
        p.error("--shutdown-delay must not be negative")
    return args


def daemonize() -> None:
    """Classic double fork: the launcher's child exits at once, the daemon is reparented to init."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    fd = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(fd, target)
    if fd > 2:
        os.close(fd)


def setup_logging(path: str, keep: int, size: int, verbose: bool) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max(size, 4096),
                                                   backupCount=max(keep - 1, 0))
    if os.path.exists(path) and os.path.getsize(path) > 0:
        handler.doRollover()  # one log per service run, as VBoxSVC
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(process)d %(name)s %(levelname)s: "
                                           "%(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def listen_fd() -> int | None:
    """The socket systemd passed us (socket activation), if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        n = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)
    return SD_LISTEN_FDS_START if n >= 1 else None


def sd_notify(message: str) -> bool:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(addr)
        s.sendall(message.encode())
        return True
    except OSError:
        return False
    finally:
        s.close()


def _append_line(path: str, text: str) -> None:
    try:
        with open(path, "a") as f:
            f.write(time.strftime("%H:%M:%S ") + text + "\n")
    except OSError:
        pass


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.daemonize:
        daemonize()
    startup_fd = args.inherit_startup_pipe

    from settings import paths as spaths

    from ..ipc import autostart, paths
    home = spaths.vbox_user_home(create=True)
    logfile = args.logfile or str(home / "VBoxSVC.log")
    # One service per user and VirtualBox home, held for our whole life by two locks: the pid file in
    # the runtime folder (named after the canonical home) and a lock file in the home itself, which
    # also stops a second service started by a client with another runtime folder. Both are taken
    # before the log is opened: a service that loses must not roll the winner's VBoxSVC.log over.
    life = open(paths.life_lock_path(), "a+")
    os.chmod(life.name, 0o600)
    home_lock = open(home / paths.HOME_LOCK_NAME, "a+")
    os.chmod(home_lock.name, 0o600)
    for lock in (life, home_lock):
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            home_lock.seek(0)
            holder = home_lock.read().strip() or "pid unknown"
            _append_line(logfile, f"vboxsvc {os.getpid()}: another vboxsvc ({holder}) serves {home} already; "
                                  "exiting")
            return 0
    setup_logging(logfile, args.logrotate, args.logsize, args.verbose)
    log = logging.getLogger("vboxsvc")
    # a fatal error in native code (libzmq, lxml) leaves every thread's Python stack in the log; a
    # descriptor of its own, which the log's rotation cannot close under it
    import faulthandler
    faulthandler.enable(file=os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC))
    from ..ipc.busserver import raise_fd_limit
    log.info("descriptor limit %d", raise_fd_limit())   # each client costs a pidfd and connections
    for lock, text in ((life, f"{os.getpid()}\n"),
                       (home_lock, f"pid {os.getpid()}, {paths.socket_path()}\n")):
        lock.seek(0)
        lock.truncate()
        lock.write(text)
        lock.flush()
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")

    from .service import Service
    key = paths.load_key(create=True)
    service = Service(key, args.auto_shutdown, args.shutdown_delay / 1000)
    sock_path = paths.socket_path()
    fd = listen_fd()
    bound = False
    if fd is not None:
        name = socket.socket(fileno=os.dup(fd))
        adopted = name.getsockname()
        name.close()
        if isinstance(adopted, str) and adopted and os.path.realpath(adopted) != os.path.realpath(sock_path):
            # the socket unit names another home's endpoint: serving it would mix two homes
            log.error("the passed socket %s is not the endpoint of %s (%s); exiting", adopted,
                      home, sock_path)
            return 1
        service.bus.adopt(fd, paths.endpoint(adopted if isinstance(adopted, str) and adopted else sock_path))
        log.info("adopted the listening socket passed by systemd (%s)", adopted)
    else:
        if autostart.probe(sock_path):
            log.error("something else listens on %s; exiting", sock_path)
            return 1
        try:
            os.unlink(sock_path)  # stale: we hold the life lock, so nobody serves it
        except FileNotFoundError:
            pass
        old_umask = os.umask(0o177)
        try:
            service.bus.bind(paths.endpoint(sock_path))
        finally:
            os.umask(old_umask)
        bound = True
    # the socket accepts connections from here on: let the starter go while we load the settings
    # (hellos wait in the queue until the loop runs)
    if startup_fd is not None:
        try:
            os.write(startup_fd, b"READY")
            os.close(startup_fd)
        except OSError:
            pass
    sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving {home}")
    service.load()
    log.info("vboxsvc %d serving %s on %s", os.getpid(), home, sock_path)

    def on_signal(signum, _frame):
        log.info("signal %d: shutting down", signum)
        service.bus.stop()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def keep_key():
        paths.restore_key(key)
        service.bus.call_later(5.0, keep_key)
    service.bus.call_later(5.0, keep_key)
    service.check_idle()
    try:
        service.bus.run()
    finally:
        sd_notify("STOPPING=1")
        if bound:
            try:
                os.unlink(sock_path)
            except FileNotFoundError:
                pass
        service.bus.close()
        log.info("vboxsvc %d stopped", os.getpid())
    return 0


if __name__ == "__main__":
    sys.exit(main())
