"""The engine contract shared by HM (KVM) and REM (unicorn).

EM drives a vCPU through this contract only, so the vCPU loop, the devices and the
saved-state code never see an engine handle.  An engine is built from a `GuestMemory`
and the two buses; `Vcpu.run()` executes guest code until something needs the VMM and
returns one of the typed exits below.

I/O may be dispatched inline by an engine (REM calls the buses from its hooks because a
return to Python per port access is too costly); an engine that cannot (HM) returns an
`IoExit`/`MmioExit` and EM completes it with `Vcpu.complete_io()` before the next run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

# ---- exits -------------------------------------------------------------------------

@dataclass(slots=True)
class IoExit:
    """Port access.  For IN, EM reads the bus and calls complete_io(value)."""
    port: int
    size: int          # 1, 2 or 4
    is_write: bool
    value: int = 0     # for OUT
    count: int = 1     # string I/O repetitions (KVM may batch them)


@dataclass(slots=True)
class MmioExit:
    address: int
    size: int
    is_write: bool
    value: int = 0


@dataclass(slots=True)
class HaltExit:
    """HLT with interrupts enabled (or not): EM waits for an interrupt or event."""


@dataclass(slots=True)
class ShutdownExit:
    """Triple fault / shutdown: EM resets or goes to Stuck as the machine says."""
    reason: str = "triple fault"


@dataclass(slots=True)
class InterruptedExit:
    """run() returned because of kick() (timer due, console command, interrupt window)."""


@dataclass(slots=True)
class InternalErrorExit:
    """The engine cannot continue: EM reports Stuck with this reason in VBox.log."""
    reason: str
    details: dict = field(default_factory=dict)


VcpuExit = IoExit | MmioExit | HaltExit | ShutdownExit | InterruptedExit | InternalErrorExit


# ---- register state ----------------------------------------------------------------

@dataclass(slots=True)
class Segment:
    selector: int = 0
    base: int = 0
    limit: int = 0xFFFF
    flags: int = 0     # attribute bits as in a descriptor: type|S<<4|DPL<<5|P<<7|AVL<<12|L<<13|DB<<14|G<<15


@dataclass(slots=True)
class CpuState:
    """Architectural state of one vCPU: what saved state, DBGF and mode entry need."""
    gpr: dict[str, int] = field(default_factory=dict)   # rax..r15, rip, rflags
    seg: dict[str, Segment] = field(default_factory=dict)  # cs ds es fs gs ss tr ldtr
    gdt: tuple[int, int] = (0, 0xFFFF)   # base, limit
    idt: tuple[int, int] = (0, 0xFFFF)
    cr0: int = 0x60000010
    cr2: int = 0
    cr3: int = 0
    cr4: int = 0
    efer: int = 0
    msrs: dict[int, int] = field(default_factory=dict)
    fpu: bytes = b""   # engine-specific FPU/SSE blob (FXSAVE layout)


# ---- contract ----------------------------------------------------------------------

class Vcpu(Protocol):
    index: int

    def run(self) -> VcpuExit: ...
    def complete_io(self, value: int) -> None: ...
    def kick(self) -> None:
        """Thread-safe: make a running run() return InterruptedExit soon."""
    def interrupts_enabled(self) -> bool:
        """IF set and no interrupt shadow: an external interrupt can be taken now."""
    def inject_interrupt(self, vector: int) -> None:
        """Deliver an external interrupt through the guest's IVT/IDT before the next instruction."""
    def request_interrupt_window(self, wanted: bool) -> None:
        """Return from run() as soon as interrupts_enabled() becomes true."""
    def get_state(self) -> CpuState: ...
    def set_state(self, state: CpuState) -> None: ...


class Vm(Protocol):
    name: str          # "HM" or "REM"

    def create_vcpu(self, index: int) -> Vcpu: ...
    def close(self) -> None: ...
