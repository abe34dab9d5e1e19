"""The i440FX host bridge's own registers (PCI 00:00.0): PAM shadow control and SMRAM.

VirtualBox's PIIX3 chipset presents an Intel 82441FX (8086:1237).  The firmware shadows
itself into RAM through the seven PAM registers (config 0x59-0x5F; see vmm.physmap for
what each nibble means); every change is handed to `on_pam_change(pam_bytes)`, which makes
the engines remap 0xC0000-0xFFFFF.  SMRAM control (0x72) keeps its bits (the VM has no
SMM: the A/B segments stay the VGA hole whatever it says), including D_LCK, which freezes
D_OPEN until reset.

The subsystem ID 1AF4:1100 is what SeaBIOS checks before it trusts fw_cfg (it is QEMU's);
the VM builder sets it when the firmware is SeaBIOS.
"""

from __future__ import annotations

from collections.abc import Callable

from vmm.devices.pci import CMD_MEMORY, COMMAND, PciFunction, PciFunctionState

VENDOR_INTEL = 0x8086
DEVICE_82441 = 0x1237
QEMU_SUBSYSTEM = (0x1AF4, 0x1100)
PAM0 = 0x59
PAM_COUNT = 7
SMRAM = 0x72
SMRAM_DEFAULT = 0x02           # C_BASE_SEG = 010: the A/B segments
SMRAM_D_OPEN = 0x40
SMRAM_D_CLS = 0x20
SMRAM_D_LCK = 0x10
SMRAM_G_SMRAME = 0x08
PAM0_MASK = 0xF0               # PAM0's low nibble is reserved


class I440fxHost(PciFunction):
    def __init__(self, on_pam_change: Callable[[bytes], None] | None = None,
                 subsystem: tuple[int, int] = (0, 0)):
        super().__init__(vendor_id=VENDOR_INTEL, device_id=DEVICE_82441, class_code=0x060000, revision=2,
                         subsystem_vendor_id=subsystem[0], subsystem_id=subsystem[1])
        self._put(COMMAND, 2, CMD_MEMORY)
        self.on_pam_change = on_pam_change
        self.config[SMRAM] = SMRAM_DEFAULT

    @property
    def pam(self) -> bytes:
        return bytes(self.config[PAM0:PAM0 + PAM_COUNT])

    def set_pam(self, values: bytes) -> None:
        """What a firmware that already shadowed itself leaves behind (the --boot-kernel path)."""
        for i, v in enumerate(values[:PAM_COUNT]):
            self.config[PAM0 + i] = v & (PAM0_MASK if i == 0 else 0xFF)
        self._notify()

    def config_write(self, offset: int, size: int, value: int) -> None:
        if size not in (1, 2, 4) or offset < 0 or offset + size > 256:
            return
        before = self.pam
        special = False
        for i in range(size):
            off, byte = offset + i, (value >> (8 * i)) & 0xFF
            if PAM0 <= off < PAM0 + PAM_COUNT:
                self.config[off] = byte & (PAM0_MASK if off == PAM0 else 0xFF)
                special = True
            elif off == SMRAM:
                self._write_smram(byte)
                special = True
        if not special:
            super().config_write(offset, size, value)
        elif any(not (PAM0 <= offset + i < PAM0 + PAM_COUNT or offset + i == SMRAM) for i in range(size)):
            # a dword write that also covers ordinary registers: let the base class take those bytes
            for i in range(size):
                off = offset + i
                if not (PAM0 <= off < PAM0 + PAM_COUNT or off == SMRAM):
                    super().config_write(off, 1, (value >> (8 * i)) & 0xFF)
        if self.pam != before:
            self._notify()

    def _write_smram(self, byte: int) -> None:
        cur = self.config[SMRAM]
        if cur & SMRAM_D_LCK:
            byte &= ~SMRAM_D_OPEN
            byte |= SMRAM_D_LCK
        new = (byte & (SMRAM_D_OPEN | SMRAM_D_CLS | SMRAM_D_LCK | SMRAM_G_SMRAME)) | SMRAM_DEFAULT
        if new & SMRAM_D_LCK:
            new &= ~SMRAM_D_OPEN
        self.config[SMRAM] = new

    def _notify(self) -> None:
        if self.on_pam_change is not None:
            self.on_pam_change(self.pam)

    def set_state(self, state: PciFunctionState) -> None:
        super().set_state(state)
        self._notify()
