"""An interrupt line: what a device raises and an interrupt controller (or an engine's in-kernel
one) receives.  Its own module so that engines, devices and the VM builder share it without
engines importing devices."""

from __future__ import annotations

from collections.abc import Callable


class IrqLine:
    """One interrupt input of an interrupt controller, as seen by the device raising it."""

    __slots__ = ("_sink", "level")

    def __init__(self, sink: Callable[[bool], None] | None = None):
        self._sink = sink
        self.level = False

    def set_level(self, level: bool) -> None:
        level = bool(level)
        if level != self.level:
            self.level = level
            if self._sink is not None:
                self._sink(level)

    def raise_(self) -> None:
        self.set_level(True)

    def lower(self) -> None:
        self.set_level(False)

    def pulse(self) -> None:
        """Edge-triggered devices: a rising edge then low."""
        self.set_level(True)
        self.set_level(False)
