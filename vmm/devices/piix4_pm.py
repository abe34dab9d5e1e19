"""The ACPI power-management function (PCI 00:07.0, PIIX4 PM 8086:7113), as VirtualBox places it.

The PM register block (vmm.devices.acpi.AcpiPm: PM1 status/enable/control, PM timer, reset
register) has no fixed port: the firmware writes its base into PMBASE (config 0x40, a 64-byte
aligned I/O address, bit 0 reads 1) and enables decoding with PMREGMISC bit 0 (0x80).  This
function moves the block on the I/O bus whenever either changes, so the FADT the VMM builds
later (from `pm_base`) names where the guest finds it.  SMBus base (0x90) and host
configuration (0xD2) are kept for the firmware; no SMBus controller answers behind them.
Config 0x5B is left 0: the firmware in use has no SMM handshake to skip.
"""

from __future__ import annotations

from vmm.bus import Bus, RegisterDevice
from vmm.devices.pci import PciFunction, PciFunctionState

DEVICE_PIIX4_PM = 0x7113
PMBASE = 0x40
PMREGMISC = 0x80
PMIOSE = 0x01
SMBBA = 0x90
PM_BLOCK = 0x40              # the PIIX4's PM I/O space
PM_DECODED = 0x20            # what AcpiPm implements of it


class _Window:
    """A distinct object per placement, so the bus can drop exactly this mapping."""

    def __init__(self, dev: RegisterDevice):
        self.read = dev.read
        self.write = dev.write


class Piix4Pm(PciFunction):
    def __init__(self, pm: RegisterDevice, io_bus: Bus | None):
        super().__init__(vendor_id=0x8086, device_id=DEVICE_PIIX4_PM, class_code=0x068000, revision=3,
                         interrupt_pin=1)
        self.pm = pm
        self._io = io_bus
        self._window: _Window | None = None
        self.pm_base: int | None = None
        for off in range(0x40, 0x100):
            self._wmask[off] = 0xFF
        self._put(PMBASE, 4, 1)
        self._put(SMBBA, 4, 1)

    def config_write(self, offset: int, size: int, value: int) -> None:
        super().config_write(offset, size, value)
        # PMBASE/SMBBA: bit 0 reads 1, only the aligned address bits 15:6 (15:4) are kept
        self._put(PMBASE, 4, (self._get(PMBASE, 4) & 0xFFC0) | 1)
        self._put(SMBBA, 4, (self._get(SMBBA, 4) & 0xFFF0) | 1)
        self._place()

    def enable(self, base: int) -> None:
        """What a firmware does (the --boot-kernel path): PM block at `base`, decoding on."""
        self.config_write(PMBASE, 4, base)
        self.config_write(PMREGMISC, 1, PMIOSE)

    def _place(self) -> None:
        want = self._get(PMBASE, 4) & 0xFFC0 if self.config[PMREGMISC] & PMIOSE else None
        if want == 0:
            want = None
        if want == self.pm_base or self._io is None:
            return
        if self._window is not None:
            self._io.unregister(self._window)
            self._window = None
        self.pm_base = None
        if want is None:
            return
        window = _Window(self.pm)
        try:
            self._io.register(want, PM_DECODED, window)
        except ValueError:
            return                     # over another device's ports: not decoded, as with a BAR
        self._window, self.pm_base = window, want

    def set_state(self, state: PciFunctionState) -> None:
        super().set_state(state)
        self._place()
