"""The small interface between a NIC (guest side) and its attachment (host side).

A NIC hands each Ethernet frame the guest transmits to `NetBackend.send` (on the vCPU
thread); a backend hands each frame for the guest to the `FrameSink` the NIC attached, from
whatever thread it runs (the sink queues it and wakes the device).  Frames are plain bytes
without the FCS.  Neither side ever sees the other's memory or threads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol

MAX_FRAME = 65536 + 14        # the largest frame a backend accepts (a 64 KiB IP packet + header)
RX_QUEUE_FRAMES = 1024        # frames waiting for guest buffers before new ones are dropped


class NetBackend(Protocol):
    def attach(self, sink: Callable[[bytes], None]) -> None: ...
    def send(self, frame: bytes) -> None: ...
    def close(self) -> None: ...


class NullBackend:
    """`null` attachment: the cable is there, nothing is on the other end."""

    description = "null"

    def attach(self, sink: Callable[[bytes], None]) -> None:
        pass

    def send(self, frame: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class RxQueue:
    """Frames from the backend thread to the device thread, bounded; `on_frame` wakes the device."""

    def __init__(self, on_frame: Callable[[], None] | None = None, limit: int = RX_QUEUE_FRAMES):
        self._q: deque[bytes] = deque()
        self._lock = threading.Lock()
        self.limit = limit
        self.dropped = 0
        self.on_frame = on_frame

    def put(self, frame: bytes) -> None:
        with self._lock:
            if len(self._q) >= self.limit:
                self.dropped += 1
                return
            self._q.append(bytes(frame))
        if self.on_frame is not None:
            self.on_frame()

    def peek(self) -> bytes | None:
        with self._lock:
            return self._q[0] if self._q else None

    def pop(self) -> bytes | None:
        with self._lock:
            return self._q.popleft() if self._q else None

    def clear(self) -> None:
        with self._lock:
            self._q.clear()

    def __len__(self) -> int:
        return len(self._q)
