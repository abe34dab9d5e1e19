"""Debug ports: the POST code port and a boot-time marker port.

PostCodePort: 1 byte (PC: 0x80).  Firmware writes progress codes here and Linux writes it as
an I/O delay (`outb_p`), thousands of times at boot, so a write only stores the byte;
`on_code(value)` runs only when the value changes.  Reads return the last byte written.

BootMarkerPort: 4 bytes, recommended at 0x0440 (free on a PC and in VirtualBox's port map;
QEMU's debugcon 0x402 and fw_cfg 0x510 are avoided).  A guest write (1, 2 or 4 bytes at offset
0) records a marker: the value and the virtual time, logged and passed to
`on_marker(value, now_ns)`; the boot benchmark and tests time guest milestones with it.
From a Linux guest's shell: `printf '\\001' | dd of=/dev/port bs=1 seek=1088 count=1`.
Reads return the signature "VBPY" (so a guest can detect the port); the last 256 markers are
kept in `markers`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from vmm.tm import Clock

log = logging.getLogger(__name__)

BOOT_MARKER_PORT = 0x0440
_SIGNATURE = b"VBPY"
_MAX_MARKERS = 256


@dataclass
class PostCodeState:
    value: int = 0
    writes: int = 0


class PostCodePort:
    def __init__(self, on_code: Callable[[int], None] | None = None):
        self.on_code = on_code
        self.s = PostCodeState()

    def read(self, offset: int, size: int) -> int:
        if size != 1 or offset != 0:
            return (1 << (8 * size)) - 1 if size in (1, 2, 4) else 0xFF
        return self.s.value

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 1 or offset != 0:
            return
        value &= 0xFF
        self.s.writes += 1
        if value != self.s.value:
            self.s.value = value
            if self.on_code is not None:
                self.on_code(value)

    def get_state(self) -> PostCodeState:
        return PostCodeState(**vars(self.s))

    def set_state(self, state: PostCodeState) -> None:
        self.s = PostCodeState(value=state.value & 0xFF, writes=state.writes)


@dataclass
class BootMarkerState:
    markers: list[tuple[int, int]] = field(default_factory=list)     # (now_ns, value)


class BootMarkerPort:
    def __init__(self, clock: Clock, on_marker: Callable[[int, int], None] | None = None):
        self.clock = clock
        self.on_marker = on_marker
        self.markers: deque[tuple[int, int]] = deque(maxlen=_MAX_MARKERS)

    def read(self, offset: int, size: int) -> int:
        if size not in (1, 2, 4) or offset < 0 or offset + size > 4:
            return (1 << (8 * size)) - 1 if size in (1, 2, 4) else 0xFF
        return int.from_bytes(_SIGNATURE[offset:offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        if size not in (1, 2, 4) or offset != 0:
            return
        value &= (1 << (8 * size)) - 1
        now = self.clock.now_ns()
        self.markers.append((now, value))
        log.info("boot marker %#x at %.3f ms (virtual time)", value, now / 1e6)
        if self.on_marker is not None:
            self.on_marker(value, now)

    def get_state(self) -> BootMarkerState:
        return BootMarkerState(markers=list(self.markers))

    def set_state(self, state: BootMarkerState) -> None:
        self.markers = deque(((int(t), int(v)) for t, v in state.markers), maxlen=_MAX_MARKERS)
