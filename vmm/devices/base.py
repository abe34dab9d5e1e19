"""What a device is given by the VM builder: its interrupt line (vmm.irq) and a clock (vmm.tm)."""

from vmm.irq import IrqLine

__all__ = ["IrqLine"]
