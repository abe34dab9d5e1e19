"""The e1000's serial EEPROM (Microwire, 64 words, read by bit-banging EECD or through EERD) and
its Marvell 88E1011-style PHY behind MDIC: the two side chips a driver talks to at probe time."""

from __future__ import annotations

EEPROM_WORDS = 64
EEPROM_CHECKSUM_WORD = 0x3F
EEPROM_SUM = 0xBABA
READ_OPCODE = 0b110                    # start bit + READ
ADDRESS_BITS = 6

PHY_CTRL, PHY_STATUS, PHY_ID1, PHY_ID2 = 0, 1, 2, 3
PHY_ADV, PHY_LP, PHY_1000T_CTRL, PHY_1000T_STATUS = 4, 5, 9, 10
PHY_EXT_STATUS, M88_SPEC_CTRL, M88_SPEC_STATUS = 15, 16, 17
PHY_CTRL_RESET, PHY_CTRL_RESTART_AN = 0x8000, 0x0200
STATUS_BASE = 0x7949                   # 10/100 half/full, extended status, preamble suppression, AN able
STATUS_LINK, STATUS_AN_DONE = 0x0004, 0x0020
READ_ONLY = {PHY_STATUS, PHY_ID1, PHY_ID2, PHY_LP, PHY_1000T_STATUS, PHY_EXT_STATUS, M88_SPEC_STATUS}


def eeprom_image(mac: bytes, device_id: int, sub_vendor: int, sub_id: int) -> list[int]:
    words = [0] * EEPROM_WORDS
    for i in range(3):
        words[i] = mac[2 * i] | mac[2 * i + 1] << 8
    words[0x04] = 0xFFFF                # LED settings: the driver's defaults
    words[0x0B], words[0x0C], words[0x0D], words[0x0E] = sub_id, sub_vendor, device_id, 0x8086
    words[EEPROM_CHECKSUM_WORD] = (EEPROM_SUM - sum(words[:EEPROM_CHECKSUM_WORD])) & 0xFFFF
    return words


class Eeprom:
    """Microwire protocol on EECD: with CS high, DI is sampled on SK rising edges; after the 3-bit
    READ opcode and the address, each SK falling edge moves DO to the next bit (MSB first),
    running on into the following words."""

    def __init__(self, words: list[int]):
        self.words = list(words)
        self.reset_protocol()

    def reset_protocol(self) -> None:
        self.bits_in = 0
        self.value_in = 0
        self.reading = False
        self.address = 0
        self.out_pos = -1

    def clock(self, old: int, new: int, cs: int, sk: int, di: int) -> None:
        if not new & cs:
            self.reset_protocol()
            return
        if not old & cs:
            self.reset_protocol()
        rising = new & sk and not old & sk
        falling = old & sk and not new & sk
        if rising and not self.reading:
            self.value_in = (self.value_in << 1) | (1 if new & di else 0)
            self.bits_in += 1
            if self.bits_in == 3 + ADDRESS_BITS:
                opcode = self.value_in >> ADDRESS_BITS
                self.address = self.value_in & ((1 << ADDRESS_BITS) - 1)
                self.reading = opcode == READ_OPCODE
                self.out_pos = -1
        elif falling and self.reading:
            self.out_pos += 1

    def data_out(self) -> int:
        if not self.reading or self.out_pos < 0:
            return 0
        word = self.words[(self.address + self.out_pos // 16) % EEPROM_WORDS]
        return (word >> (15 - self.out_pos % 16)) & 1

    def read_word(self, address: int) -> int:
        return self.words[address % EEPROM_WORDS]


class Phy:
    def __init__(self, phy_id: int, link_up: bool = True):
        self.phy_id = phy_id
        self.link_up = link_up
        self.regs = [0] * 32
        self.reset()

    def reset(self) -> None:
        self.regs = [0] * 32
        self.regs[PHY_CTRL] = 0x1140
        self.regs[PHY_ID1] = self.phy_id >> 16
        self.regs[PHY_ID2] = self.phy_id & 0xFFFF
        self.regs[PHY_ADV] = 0x01E1
        self.regs[PHY_1000T_CTRL] = 0x0E00
        self.regs[PHY_EXT_STATUS] = 0x3000
        self.regs[M88_SPEC_CTRL] = 0x0068

    def read(self, reg: int) -> int:
        up = self.link_up
        if reg == PHY_STATUS:
            return STATUS_BASE | (STATUS_LINK | STATUS_AN_DONE if up else 0)
        if reg == PHY_LP:
            return 0x45E1 if up else 0
        if reg == PHY_1000T_STATUS:
            return 0x3C00 if up else 0
        if reg == M88_SPEC_STATUS:
            return 0xAC00 if up else 0
        return self.regs[reg & 31]

    def write(self, reg: int, value: int) -> None:
        reg &= 31
        if reg in READ_ONLY:
            return
        if reg == PHY_CTRL:
            if value & PHY_CTRL_RESET:
                self.reset()
                return
            value &= ~PHY_CTRL_RESTART_AN
        self.regs[reg] = value & 0xFFFF


class MdioBitBang:
    """The 82543GC has no MDIC register: the driver clocks MII frames through two software pins of
    CTRL (MDC the clock, MDIO the data, each with a direction bit).  A frame is 32 preamble ones,
    start "01", the opcode (10 read, 01 write), 5 PHY and 5 register address bits; a read then
    turns the bus around and the PHY drives 16 data bits, a write sends turnaround + 16 bits."""

    IDLE, HEADER, READ, WRITE = range(4)

    def __init__(self, phy: Phy):
        self.phy = phy
        self.reset()

    def reset(self) -> None:
        self.state = self.IDLE
        self.ones = 0
        self.bits = 0
        self.count = 0
        self.out = 1
        self.value = 0
        self.reg = 0
        self.addr = 0

    def clock(self, mdio_out: bool | None) -> None:
        """One MDC rising edge; mdio_out is the bit the driver drives, None when it listens."""
        if self.state == self.IDLE:
            if mdio_out is None:
                return
            if mdio_out:
                self.ones += 1
            elif self.ones >= 32:
                self.state, self.bits, self.count = self.HEADER, 0, 1
            else:
                self.ones = 0
        elif self.state == self.HEADER:
            if mdio_out is None:
                self.reset()
                return
            self.bits = (self.bits << 1) | int(mdio_out)
            self.count += 1
            if self.count == 14:              # "0" seen in IDLE + 13 more: 1, op(2), phy(5), reg(5)
                op, self.addr, self.reg = (self.bits >> 10) & 3, (self.bits >> 5) & 31, self.bits & 31
                if op == 0b10:
                    self.state, self.count = self.READ, 0
                    self.value = self.phy.read(self.reg) if self.addr == 1 else 0xFFFF
                elif op == 0b01:
                    self.state, self.count, self.bits = self.WRITE, 0, 0
                else:
                    self.reset()
        elif self.state == self.READ:
            self.count += 1                   # edge 1: turnaround; edges 2..17: data MSB first
            if 2 <= self.count <= 17:
                self.out = (self.value >> (17 - self.count)) & 1
            elif self.count > 17:
                self.reset()
        else:
            if mdio_out is None:
                self.reset()
                return
            self.bits = (self.bits << 1) | int(mdio_out)
            self.count += 1
            if self.count == 18:              # turnaround "10" + 16 data bits
                if self.addr == 1:
                    self.phy.write(self.reg, self.bits & 0xFFFF)
                self.reset()
