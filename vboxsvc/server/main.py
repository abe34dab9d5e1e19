"""`vboxsvc` (VBoxSVC): the per-user service process.

Options follow VBoxSVC: -a/--automate (started on demand: daemonize + auto-shutdown),
-A/--auto-shutdown, -d/--daemonize, -D/--shutdown-delay <ms> (default 5000, or
$VBOXSVC_SHUTDOWN_DELAY_MS), -p/--pidfile, -F/--logfile, -R/--logrotate <n>,
-P/--inherit-startup-pipe <fd> (write READY there once serving). Under systemd it adopts
the listening socket passed with LISTEN_FDS/LISTEN_PID and reports READY=1 to
$NOTIFY_SOCKET (Type=notify).
"""

from __future__ import annotations

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


# short, long, value name (None: a flag), help; parsed with getopt (argparse costs the start 5 ms)
OPTIONS = (
    ("a", "automate", None, "started on demand: daemonize, auto-shutdown"),
    ("A", "auto-shutdown", None, "exit when the last client is gone"),
    ("d", "daemonize", None, "detach from the terminal"),
    ("D", "shutdown-delay", "MS",
     "idle time before auto-shutdown (default 5000 ms or $VBOXSVC_SHUTDOWN_DELAY_MS)"),
    ("p", "pidfile", "FILE", "write the process id there"),
    ("F", "logfile", "FILE", "default: VBoxSVC.log in the VirtualBox home"),
    ("R", "logrotate", "N", "log files kept (default 10)"),
    ("S", "logsize", "BYTES", "size at which the log is rotated (default 100 MiB)"),
    ("I", "loginterval", "SECONDS", "accepted for VBoxSVC's sake (default 86400)"),
    ("P", "inherit-startup-pipe", "FD", "write READY there once serving"),
    ("v", "verbose", None, "log debug messages"),
    ("h", "help", None, "show this help and exit"),
)
DEFAULTS = {"logrotate": 10, "logsize": 100 * 1024 * 1024, "loginterval": 24 * 3600}
USAGE = "usage: vboxsvc [-h] " + " ".join(f"[-{s}{' ' + v if v else ''}]" for s, _l, v, _h in OPTIONS[:-1])


class Options:
    """The parsed command line: one attribute per long option (dashes as underscores)."""

    def __init__(self):
        for _s, long, value, _h in OPTIONS:
            setattr(self, long.replace("-", "_"), DEFAULTS.get(long) if value else False)


def _usage_error(text: str):
    sys.stderr.write(f"{USAGE}\nvboxsvc: error: {text}\n")
    raise SystemExit(2)


def _help() -> str:
    lines = [USAGE, "", "The vboxpy service (VBoxSVC).", "", "options:"]
    for short, long, value, text in OPTIONS:
        flags = f"-{short}{' ' + value if value else ''}, --{long}{' ' + value if value else ''}"
        lines.append(f"  {flags:<36} {text}")
    return "\n".join(lines) + "\n"


def parse_args(argv) -> Options:
    import getopt

    by_flag = {}
    for spec in OPTIONS:
        by_flag["-" + spec[0]] = by_flag["--" + spec[1]] = spec
    shorts = "".join(s + (":" if v else "") for s, _l, v, _h in OPTIONS)
    longs = [f"{long}=" if v else long for _s, long, v, _h in OPTIONS]
    try:
        found, rest = getopt.gnu_getopt(list(argv), shorts, longs)
    except getopt.GetoptError as e:
        _usage_error(e.msg)
    if rest:
        _usage_error(f"unrecognized arguments: {' '.join(rest)}")
    args = Options()
    for flag, text in found:
        _short, long, value, _h = by_flag[flag]
        if long == "help":
            sys.stdout.write(_help())
            raise SystemExit(0)
        if value is None:
            setattr(args, long.replace("-", "_"), True)
        elif long in ("pidfile", "logfile"):
            setattr(args, long, text)
        else:
            try:
                setattr(args, long.replace("-", "_"), int(text))
            except ValueError:
                _usage_error(f"argument {flag}: invalid int value: '{text}'")
    if args.automate:
        args.daemonize = True
        args.auto_shutdown = True
    if args.shutdown_delay is None:
        env = os.environ.get("VBOXSVC_SHUTDOWN_DELAY_MS")
        try:
            args.shutdown_delay = int(env) if env else DEFAULT_SHUTDOWN_DELAY_MS
        except ValueError:
            _usage_error(f"VBOXSVC_SHUTDOWN_DELAY_MS must be a number of milliseconds, not {env!r}")
    if args.shutdown_delay < 0:
        _usage_error("--shutdown-delay must not be negative")
    return args


def daemonize(keep: int | None = None) -> None:
    """Classic double fork: the launcher's child exits at once, the daemon is reparented to init.
    The daemon keeps no descriptor of its starter but `keep` (a pipe a parent waits on to end would
    otherwise stay open as long as the service runs)."""
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
    top = os.sysconf("SC_OPEN_MAX")
    if keep is None or keep < 3:
        os.closerange(3, top)
    else:
        os.closerange(3, keep)
        os.closerange(keep + 1, top)


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
        daemonize(keep=args.inherit_startup_pipe)
    startup_fd = args.inherit_startup_pipe

    from settings import home as shome

    from ..ipc import autostart, paths
    home = shome.vbox_user_home(create=True)
    logfile = args.logfile or os.path.join(home, "VBoxSVC.log")
    # One service per user and VirtualBox home, held for our whole life by two locks: the pid file in
    # the runtime folder (named after the canonical home) and a lock file in the home itself, which
    # also stops a second service started by a client with another runtime folder. Both are taken
    # before the log is opened: a service that loses must not roll the winner's VBoxSVC.log over.
    life = open(paths.life_lock_path(), "a+")
    os.chmod(life.name, 0o600)
    home_lock = open(os.path.join(home, paths.HOME_LOCK_NAME), "a+")
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
        service.leave_record()
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
