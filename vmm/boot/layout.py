"""Where the boot loader puts things in guest-physical memory, and the e820 map it reports.

Fixed low addresses follow what PC boot loaders use: a GDT at 0x500, identity page
tables at 0x1000, the zero page (boot_params or hvm_start_info) at 0x7000, the command
line at 0x20000, the kernel at 1 MiB and the initrd at the top of low RAM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

GDT_ADDR = 0x500
PAGE_TABLES = 0x1000          # PML4, PDPT, 4 page directories: 0x1000-0x6FFF
ZERO_PAGE = 0x7000
START_INFO_MEMMAP = 0x7400    # hvm_memmap_table_entry[] for PVH
START_INFO_MODLIST = 0x7C00   # hvm_modlist_entry[] for PVH
FLAT_LOAD = 0x7C00
CMDLINE_ADDR = 0x20000
CMDLINE_MAX = 0x10000
KERNEL_ADDR = 0x100000
LOW_MEMORY_END = 0x9FC00      # conventional memory the guest may use (EBDA above)
BIOS_AREA = (0x9FC00, 0x100000 - 0x9FC00)

E820_RAM = 1
E820_RESERVED = 2
E820_ACPI = 3


@dataclass(frozen=True)
class E820Entry:
    addr: int
    size: int
    type: int


def e820_map(ram_regions: list[tuple[int, int]], reserved: Sequence[E820Entry] = ()) -> list[E820Entry]:
    """RAM minus the BIOS area and the given reserved/ACPI ranges, plus those ranges, sorted.

    `ram_regions` are (guest-physical base, length) of RAM, as GuestMemory.regions has them.
    """
    holes = [E820Entry(*BIOS_AREA, E820_RESERVED), *reserved]
    entries: list[E820Entry] = []
    for base, length in ram_regions:
        pieces = [(base, base + length)]
        for h in holes:
            nxt = []
            for s, e in pieces:
                if h.addr >= e or h.addr + h.size <= s:
                    nxt.append((s, e))
                    continue
                if s < h.addr:
                    nxt.append((s, h.addr))
                if h.addr + h.size < e:
                    nxt.append((h.addr + h.size, e))
            pieces = nxt
        entries += [E820Entry(s, e - s, E820_RAM) for s, e in pieces if e > s]
    entries += holes
    return sorted(entries, key=lambda x: x.addr)
