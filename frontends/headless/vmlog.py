"""The VM process's log (VBox.log) with VirtualBox's line format: `HH:MM:SS.uuuuuu message`.

The time is the elapsed time since the process started, as in VirtualBox's release log.
When the service launched the process, stdout already is the machine's Logs/VBox.log (the
service rotated it); a VM process started by hand rotates and opens that file itself, so
the terminal only shows the frontend's own messages.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time

_T0 = time.time()
LOGGERS = ("vboxpy", "vmm")     # the frontend's and the VMM's loggers


class ElapsedFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        elapsed = max(0.0, record.created - _T0)
        h, rest = divmod(elapsed, 3600)
        m, s = divmod(rest, 60)
        stamp = f"{int(h):02d}:{int(m):02d}:{s:09.6f}"
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return "\n".join(f"{stamp} {line}" for line in text.splitlines() or [""])


def rotate(folder: str, keep: int) -> str:
    """VBox.log -> VBox.log.1 -> ... -> VBox.log.<keep>; returns the path of the new VBox.log."""
    os.makedirs(folder, exist_ok=True)
    base = os.path.join(folder, "VBox.log")
    if keep <= 0:
        return base
    for i in range(keep, 0, -1):
        src = base if i == 1 else f"{base}.{i - 1}"
        if os.path.exists(src):
            os.replace(src, f"{base}.{i}")
    return base


def stream_handler(stream=None) -> logging.Handler:
    return formatted(logging.StreamHandler(stream or sys.stdout))


def file_handler(path: str) -> logging.Handler:
    return formatted(logging.FileHandler(path, mode="a", encoding="utf-8"))


def formatted(handler: logging.Handler) -> logging.Handler:
    handler.setFormatter(ElapsedFormatter())
    return handler


def use(handler: logging.Handler) -> logging.Handler:
    """Send the VM process's and the VMM's loggers (vboxpy.*, vmm.*) to `handler` only."""
    for name in LOGGERS:
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    return handler


def header(log: logging.Logger, version: str) -> None:
    log.info("vboxpy VM process (VBoxHeadless) %s", version)
    now = time.time()
    log.info("Log opened %s.%06dZ", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)),
             int(now * 1e6) % 1000000)
    u = platform.uname()
    log.info("OS Product: %s", u.system)
    log.info("OS Release: %s", u.release)
    log.info("Host: %s (%s)", u.node, u.machine)
    log.info("Process ID: %d", os.getpid())
    log.info("Python: %s", sys.version.split()[0])
    log.info("Executable: %s", sys.argv[0])
    log.info("Arg[*]: %s", " ".join(sys.argv[1:]))
