"""TM: the virtual clock that drives the timer devices (PIT, RTC, PM timer, APIC timer).

Devices get a `Clock`: they read `now_ns()` and arm `Timer`s.  Timer callbacks never run
on a foreign thread: whoever owns the device model (EM's vCPU thread, or a test) calls
`run_due()`; `next_deadline()` tells EM how long it may let the guest run or sleep.
`VirtualClock` follows the host's monotonic clock while the VM runs and stops while it
is paused; `FakeClock` is advanced by hand in unit tests.
"""

from __future__ import annotations

import abc
import heapq
import itertools
import threading
import time
from collections.abc import Callable


class Timer:
    __slots__ = ("_clock", "callback", "deadline", "_seq")

    def __init__(self, clock: Clock, callback: Callable[[], None]):
        self._clock = clock
        self.callback = callback
        self.deadline: int | None = None
        self._seq = 0

    @property
    def armed(self) -> bool:
        return self.deadline is not None

    def arm(self, deadline_ns: int) -> None:
        self._clock._arm(self, deadline_ns)

    def arm_in(self, delta_ns: int) -> None:
        self._clock._arm(self, self._clock.now_ns() + max(0, delta_ns))

    def cancel(self) -> None:
        # under the clock's lock: a device thread may arm the same timer meanwhile (a frame or
        # a byte arriving), and a cancel that interleaves with that arm must not leave the timer
        # looking armed with no live heap entry (it would never fire again)
        with self._clock._lock:
            self.deadline = None
            self._seq += 1     # invalidates the heap entry


class Clock(abc.ABC):
    """Base: a heap of timers over an abstract now_ns()."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, Timer]] = []
        self._count = itertools.count()
        self._lock = threading.Lock()
        self.on_timer_armed: Callable[[int], None] | None = None   # EM: re-evaluate sleep/run budget

    @abc.abstractmethod
    def now_ns(self) -> int:
        """Guest time in nanoseconds."""

    def pause(self) -> None:
        """EM paused the VM: guest time stands still until resume().  A clock that host time does
        not drive (FakeClock) has nothing to do."""
        return None

    def resume(self) -> None:
        """EM resumed the VM: guest time runs on from where pause() stopped it."""
        return None

    def new_timer(self, callback: Callable[[], None]) -> Timer:
        return Timer(self, callback)

    def _arm(self, timer: Timer, deadline: int) -> None:
        with self._lock:
            timer._seq += 1
            timer.deadline = deadline
            heapq.heappush(self._heap, (deadline, next(self._count), timer._seq, timer))
        if self.on_timer_armed is not None:
            self.on_timer_armed(deadline)

    def next_deadline(self) -> int | None:
        with self._lock:
            while self._heap:
                deadline, _, seq, timer = self._heap[0]
                if timer._seq == seq and timer.deadline == deadline:
                    return deadline
                heapq.heappop(self._heap)
            return None

    def armed(self) -> list[tuple[int, str]]:
        """(deadline, callback name) of every armed timer, soonest first: for diagnostics."""
        with self._lock:
            live = [(t.deadline, getattr(t.callback, "__qualname__", repr(t.callback)))
                    for _, _, seq, t in self._heap if t._seq == seq and t.deadline is not None]
        return sorted(live)

    def run_due(self) -> int:
        """Fire every timer whose deadline has passed; returns how many fired."""
        fired = 0
        now = self.now_ns()
        while True:
            with self._lock:
                if not self._heap:
                    break
                deadline, _, seq, timer = self._heap[0]
                if timer._seq != seq or timer.deadline != deadline:
                    heapq.heappop(self._heap)
                    continue
                if deadline > now:
                    break
                heapq.heappop(self._heap)
                timer.deadline = None
            timer.callback()
            fired += 1
        return fired


class VirtualClock(Clock):
    """Host monotonic time minus the time spent paused."""

    def __init__(self) -> None:
        super().__init__()
        self._offset = time.monotonic_ns()
        self._paused_at: int | None = None

    def now_ns(self) -> int:
        if self._paused_at is not None:
            return self._paused_at
        return time.monotonic_ns() - self._offset

    def pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = self.now_ns()

    def resume(self) -> None:
        if self._paused_at is not None:
            self._offset = time.monotonic_ns() - self._paused_at
            self._paused_at = None

    def set_now(self, now_ns: int) -> None:
        """Restore from saved state: continue the guest's time where it stopped."""
        self._offset = time.monotonic_ns() - now_ns
        if self._paused_at is not None:
            self._paused_at = now_ns


class FakeClock(Clock):
    """A clock for unit tests: time moves only by advance()."""

    def __init__(self, start_ns: int = 0) -> None:
        super().__init__()
        self._now = start_ns

    def now_ns(self) -> int:
        return self._now

    def advance(self, delta_ns: int) -> int:
        """Move time forward, firing due timers in deadline order; returns timers fired."""
        target = self._now + delta_ns
        fired = 0
        while True:
            d = self.next_deadline()
            if d is None or d > target:
                break
            self._now = max(self._now, d)
            fired += self.run_due()
        self._now = target
        return fired
