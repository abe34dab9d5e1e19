"""Named crash points for fault-injection tests of every on-disk update.

Each file-system step of a settings save or a disk metadata change calls `hit(name)` just before
it happens. Normally that is one dictionary lookup. With `VBOXPY_CRASH_AT=<name>` (or
`<name>#<k>` for the k-th time that step is reached, counting from 1) the process dies right there
with `os._exit(137)`, as a kill -9 would leave it: no cleanup, no buffered writes. With
`VBOXPY_CRASH_TRACE=<file>` every step reached is appended to that file, one name a line, so a
test can enumerate the steps of an operation and then crash at each one in turn.

Lives in `settings` because it imports nothing and both the settings writer and the VMM's disk
formats use it.
"""

from __future__ import annotations

import os

_ENV_AT = "VBOXPY_CRASH_AT"
_ENV_TRACE = "VBOXPY_CRASH_TRACE"
EXIT_CODE = 137

_target: tuple[str, int] | None = None
_trace: str | None = None
_counts: dict[str, int] = {}


def configure(at: str | None = None, trace: str | None = None) -> None:
    """Arm the hook (tests and the environment at import time)."""
    global _target, _trace
    _counts.clear()
    _trace = trace or None
    _target = None
    if at:
        name, _, k = at.partition("#")
        _target = (name, int(k) if k.isdigit() and int(k) > 0 else 1)


def hit(name: str) -> None:
    """A crash point: die here if the environment names it."""
    if _target is None and _trace is None:
        return
    if _trace is not None:
        fd = os.open(_trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (name + "\n").encode())
        finally:
            os.close(fd)
    if _target is not None and _target[0] == name:
        n = _counts.get(name, 0) + 1
        _counts[name] = n
        if n == _target[1]:
            os._exit(EXIT_CODE)


configure(os.environ.get(_ENV_AT), os.environ.get(_ENV_TRACE))
