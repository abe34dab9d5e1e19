"""EM: runs one vCPU on an engine in its own thread, as a small state machine.

States: created -> running <-> paused -> done.  The console talks to the vCPU only through
the command queue (pause, resume, reset, power off, call); the loop on the vCPU thread
fires due timers, moves interrupts from the interrupt controller (local APIC or PIC) into the guest, runs the
engine and handles its exits.  Engine-agnostic: REM dispatches I/O inline, HM returns IoExit/MmioExit
which EM completes on the buses.

Preemption: a ticker thread kicks the engine when the next timer deadline passes (and
again every few ms until the run returns, so a kick that races the start of a run is not
lost); while an interrupt waits for IF, the deadline is at most WINDOW_NS away.  HLT is a
wait on a condition variable until the next deadline, an interrupt or a command.
"""

from __future__ import annotations

import collections
import enum
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol

from vmm.bus import Bus
from vmm.engine import (
    HaltExit,
    InternalErrorExit,
    InterruptedExit,
    IoExit,
    MmioExit,
    ShutdownExit,
    Vcpu,
)
from vmm.tm import Clock

log = logging.getLogger(__name__)

WINDOW_NS = 1_000_000          # poll for IF at least every 1 ms while an interrupt waits
MAX_SLICE_NS = 50_000_000      # let the guest run at most 50 ms without a look at commands
REKICK_NS = 2_000_000
IDLE_WAIT_NS = 50_000_000      # the ticker's look at a vCPU that is not running


class EmState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"


class StopReason(enum.Enum):
    POWER_OFF = "power off"            # console or guest (ACPI S5)
    ERROR = "engine error"             # guru meditation: Stuck
    TRIPLE_FAULT = "triple fault"      # the machine's policy decides reset or Stuck


class InterruptController(Protocol):
    """What EM needs from the vCPU's interrupt controller: its local APIC (vmm.devices.apic.LocalApic,
    which passes the 8259A's ExtINT through LINT0) or, in a machine without one, the 8259A pair
    (vmm.devices.pic.PicPair).  vmm.devices.irq_routing.InterruptRouting.controller() picks it."""

    def has_interrupt(self) -> bool: ...
    def acknowledge(self) -> int: ...


class Em:
    def __init__(self, vcpu: Vcpu, pic: InterruptController, clock: Clock, io_bus: Bus, mmio_bus: Bus,
                 on_reset: Callable[[], None], on_stop: Callable[[StopReason, str], None]):
        self.vcpu = vcpu
        self.pic = pic
        self.clock = clock
        self.io_bus = io_bus
        self.mmio_bus = mmio_bus
        self._on_reset = on_reset
        self._on_stop = on_stop
        self.state = EmState.CREATED
        self._cmds: queue.SimpleQueue = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._run_deadline: int | None = None
        self._ticker_wakes_at: int | None = None    # the deadline the ticker sleeps toward
        self._wake = False
        self._thread = threading.Thread(target=self._main, name="EMT-0", daemon=True)
        self._ticker = threading.Thread(target=self._tick_loop, name="EM-ticker", daemon=True)
        clock.on_timer_armed = self._timer_armed
        self.stats = {"halts": 0, "interrupts": 0, "io_exits": 0, "mmio_exits": 0}
        self.recent_interrupts: collections.deque = collections.deque(maxlen=32)   # (ns, vector): diagnostics

    # -- console side (any thread) ---------------------------------------------------------------
    def start(self, paused: bool = False) -> None:
        self.state = EmState.PAUSED if paused else EmState.RUNNING
        if paused:
            self.clock.pause()
        self._ticker.start()
        self._thread.start()

    def _post(self, cmd: str, arg=None) -> Future:
        fut: Future = Future()
        self._cmds.put((cmd, arg, fut))
        self._poke(urgent=True)
        return fut

    def pause(self) -> Future:
        return self._post("pause")

    def resume(self) -> Future:
        return self._post("resume")

    def reset(self) -> Future:
        return self._post("reset")

    def power_off(self) -> Future:
        return self._post("poweroff")

    def call(self, fn: Callable[[], object]) -> Future:
        """Run fn on the vCPU thread between guest instructions (device access, saved state)."""
        return self._post("call", fn)

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def on_vcpu_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _poke(self, urgent: bool = False) -> None:
        with self._cond:
            self._wake = True
            self._cond.notify_all()
        if urgent:
            getattr(self.vcpu, "kick_urgent", self.vcpu.kick)()
        else:
            self.vcpu.kick()

    def _timer_armed(self, deadline: int) -> None:
        with self._cond:
            if self._run_deadline is not None and deadline < self._run_deadline:
                self._run_deadline = deadline
            self._wake = True
            self._cond.notify_all()

    def interrupt_raised(self, level: bool = True) -> None:
        """PIC output callback: make a halted or running vCPU look at the PIC.

        On the vCPU thread the line rises either while EM itself runs devices (it looks at the
        PIC before the next run anyway) or, on an engine that runs port and MMIO accesses
        inline (REM), inside the guest's own access: an EOI that uncovers a pending interrupt,
        a device raising one as the guest writes it.  The engine then ends the run at its next
        block, so the interrupt waits for IF, not for the next timer tick (behind which a
        lower-priority interrupt would wait for ever)."""
        if not level:
            return
        if threading.current_thread() is not self._thread:
            self._poke()
            return
        inline = getattr(self.vcpu, "kick_inline", None)
        if inline is not None:
            inline()

    # -- ticker thread ---------------------------------------------------------------------------
    def _tick_loop(self) -> None:
        clock = self.clock
        with self._cond:
            while self.state is not EmState.DONE:
                deadline = self._run_deadline
                if deadline is None:
                    self._ticker_wakes_at = clock.now_ns() + IDLE_WAIT_NS
                    self._cond.wait(IDLE_WAIT_NS / 1e9)
                    self._ticker_wakes_at = None
                    continue
                now = clock.now_ns()
                if now < deadline:
                    self._ticker_wakes_at = deadline
                    self._cond.wait((deadline - now) / 1e9)
                    self._ticker_wakes_at = None
                    continue
                self._run_deadline = now + REKICK_NS
                if self._cmds.empty():
                    self.vcpu.kick()
                else:
                    getattr(self.vcpu, "kick_urgent", self.vcpu.kick)()

    # -- vCPU thread -----------------------------------------------------------------------------
    def _main(self) -> None:
        bind = getattr(self.pic, "bind_current_thread", None)
        if bind is not None:        # a local APIC: this thread's accesses to its page reach it
            bind()
        try:
            self._loop()
        except Exception as e:   # an EM bug ends the VM as a guru meditation, with the reason logged
            log.exception("EM: unexpected error")
            self._finish(StopReason.ERROR, f"EM error: {e!r}")

    def _finish(self, reason: StopReason, detail: str) -> None:
        if self.state is EmState.DONE:
            return
        with self._cond:
            self.state = EmState.DONE
            self._run_deadline = None
            self._cond.notify_all()
        self._on_stop(reason, detail)
        self._drain_commands()

    def _drain_commands(self) -> None:
        while True:
            try:
                _, _, fut = self._cmds.get_nowait()
            except queue.Empty:
                return
            fut.set_exception(RuntimeError("the VM is not running"))

    def _commands(self) -> None:
        """Handle queued commands; block while paused."""
        while True:
            try:
                cmd, arg, fut = self._cmds.get(block=self.state is EmState.PAUSED, timeout=0.2)
            except queue.Empty:
                if self.state is EmState.PAUSED:
                    continue
                return
            try:
                if cmd == "pause":
                    if self.state is EmState.RUNNING:
                        self.state = EmState.PAUSED
                        self.clock.pause()
                    fut.set_result(None)
                elif cmd == "resume":
                    if self.state is EmState.PAUSED:
                        self.clock.resume()
                        self.state = EmState.RUNNING
                    fut.set_result(None)
                elif cmd == "reset":
                    self._on_reset()
                    fut.set_result(None)
                elif cmd == "poweroff":
                    fut.set_result(None)
                    self._finish(StopReason.POWER_OFF, "powered off")
                    return
                elif cmd == "call":
                    fut.set_result(arg())
            except Exception as e:
                fut.set_exception(e)
            if self.state is EmState.DONE:
                return

    def request_stop(self, reason: StopReason, detail: str) -> None:
        """From device callbacks on the vCPU thread (ACPI S5): end after the current exit."""
        self._pending_stop = (reason, detail)
        self.vcpu.kick()

    def request_reset(self) -> None:
        """From device callbacks on the vCPU thread (i8042 / ACPI reset): reset before the next run."""
        self._pending_reset = True
        self.vcpu.kick()

    _pending_stop: tuple[StopReason, str] | None = None
    _pending_reset = False
    reset_on_triple_fault = False

    def _loop(self) -> None:
        vcpu, pic, clock = self.vcpu, self.pic, self.clock
        while True:
            if not self._cmds.empty() or self.state is EmState.PAUSED:
                self._commands()
            if self.state is EmState.DONE:
                return
            if self._pending_stop is not None:
                self._finish(*self._pending_stop)
                return
            if self._pending_reset:
                self._pending_reset = False
                self._on_reset()
            clock.run_due()
            window = False
            if pic.has_interrupt():
                if vcpu.interrupts_enabled():
                    vector = pic.acknowledge()
                    vcpu.inject_interrupt(vector)
                    self.recent_interrupts.append((clock.now_ns(), vector))
                    self.stats["interrupts"] += 1
                    window = pic.has_interrupt()
                else:
                    window = True
            vcpu.request_interrupt_window(window)
            now = clock.now_ns()
            deadline = clock.next_deadline()
            limit = now + (WINDOW_NS if window else MAX_SLICE_NS)
            with self._cond:
                self._run_deadline = limit if deadline is None else min(deadline, limit)
                if self._ticker_wakes_at is not None and self._run_deadline < self._ticker_wakes_at:
                    self._cond.notify_all()     # it sleeps toward a later deadline: wake it
            exit_ = vcpu.run()
            with self._cond:
                self._run_deadline = None
            if isinstance(exit_, InterruptedExit):
                continue
            if isinstance(exit_, HaltExit):
                self._halt()
            elif isinstance(exit_, IoExit):
                self.stats["io_exits"] += 1
                if exit_.is_write:
                    for _ in range(max(1, exit_.count)):
                        self.io_bus.write(exit_.port, exit_.size, exit_.value)
                else:
                    vcpu.complete_io(self.io_bus.read(exit_.port, exit_.size))
            elif isinstance(exit_, MmioExit):
                self.stats["mmio_exits"] += 1
                if exit_.is_write:
                    self.mmio_bus.write(exit_.address, exit_.size, exit_.value)
                else:
                    vcpu.complete_io(self.mmio_bus.read(exit_.address, exit_.size))
            elif isinstance(exit_, ShutdownExit):
                if self.reset_on_triple_fault:
                    log.info("EM: %s, resetting", exit_.reason)
                    self._on_reset()
                    continue
                self._finish(StopReason.TRIPLE_FAULT, exit_.reason)
                return
            elif isinstance(exit_, InternalErrorExit):
                self._finish(StopReason.ERROR, f"{exit_.reason} {exit_.details}")
                return

    def _halt(self) -> None:
        """HLT: sleep until an interrupt can be taken, a timer is due or a command arrives."""
        self.stats["halts"] += 1
        clock, pic, vcpu = self.clock, self.pic, self.vcpu
        while True:
            clock.run_due()
            if pic.has_interrupt() and vcpu.interrupts_enabled():
                return
            if not self._cmds.empty() or self._pending_stop or self._pending_reset:
                return
            deadline = clock.next_deadline()
            with self._cond:
                if self._wake:
                    self._wake = False
                    continue
                timeout = 0.5 if deadline is None else max(0.0, (deadline - clock.now_ns()) / 1e9)
                if timeout > 0:
                    self._cond.wait(min(timeout, 0.5))
                self._wake = False

