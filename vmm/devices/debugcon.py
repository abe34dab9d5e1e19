"""The firmware's debug console (Bochs/QEMU style port, PC: 0x402): SeaBIOS prints its POST log here.

Bytes are collected into lines and each finished line goes to `on_line` (the VM builder
logs it to VBox.log, as VirtualBox logs its BIOS's debug output).  Reading the port
returns 0xE9, the value firmware uses to detect the port.  A line is cut at MAX_LINE and
non-printable bytes are shown as '.', so a guest cannot flood or garble the log.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

DETECT_VALUE = 0xE9
MAX_LINE = 200
KEEP_LINES = 50


class DebugPort:
    def __init__(self, on_line: Callable[[str], None] | None = None):
        self.on_line = on_line
        self._buf = bytearray()
        self.lines: deque[str] = deque(maxlen=KEEP_LINES)

    def read(self, offset: int, size: int) -> int:
        return DETECT_VALUE if offset == 0 and size == 1 else (1 << (8 * size)) - 1

    def write(self, offset: int, size: int, value: int) -> None:
        if offset != 0:
            return
        for i in range(size if size in (1, 2, 4) else 0):
            self._byte((value >> (8 * i)) & 0xFF)

    def _byte(self, b: int) -> None:
        if b == 0x0A:
            self.flush()
        elif b == 0x0D:
            return
        else:
            self._buf.append(b if 0x20 <= b < 0x7F else 0x2E)
            if len(self._buf) >= MAX_LINE:
                self.flush()

    def flush(self) -> None:
        line = self._buf.decode("ascii")
        self._buf.clear()
        self.lines.append(line)
        if self.on_line is not None:
            self.on_line(line)

    def get_state(self) -> bytes:
        return bytes(self._buf)

    def set_state(self, state: bytes) -> None:
        self._buf = bytearray(state[:MAX_LINE])
