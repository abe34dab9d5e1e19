"""Characters to set-1 scan codes on a US keyboard, for `controlvm keyboardputstring/keyboardputfile`.

VBoxManage types text by pressing the keys a US layout needs for each character (Shift held
for the upper row), make then break; characters without a key are skipped.
"""

from __future__ import annotations

SHIFT_MAKE, SHIFT_BREAK = 0x2A, 0xAA

# (unshifted, shifted) characters of each key, by make code
_KEYS = {
    0x02: "1!", 0x03: "2@", 0x04: "3#", 0x05: "4$", 0x06: "5%", 0x07: "6^", 0x08: "7&", 0x09: "8*",
    0x0A: "9(", 0x0B: "0)", 0x0C: "-_", 0x0D: "=+", 0x10: "qQ", 0x11: "wW", 0x12: "eE", 0x13: "rR",
    0x14: "tT", 0x15: "yY", 0x16: "uU", 0x17: "iI", 0x18: "oO", 0x19: "pP", 0x1A: "[{", 0x1B: "]}",
    0x1E: "aA", 0x1F: "sS", 0x20: "dD", 0x21: "fF", 0x22: "gG", 0x23: "hH", 0x24: "jJ", 0x25: "kK",
    0x26: "lL", 0x27: ";:", 0x28: "'\"", 0x29: "`~", 0x2B: "\\|", 0x2C: "zZ", 0x2D: "xX", 0x2E: "cC",
    0x2F: "vV", 0x30: "bB", 0x31: "nN", 0x32: "mM", 0x33: ",<", 0x34: ".>", 0x35: "/?",
}
_PLAIN = {"\n": 0x1C, "\r": 0x1C, "\t": 0x0F, " ": 0x39, "\b": 0x0E, "\x1b": 0x01}
CHAR_KEYS: dict[str, tuple[int, bool]] = {c: (k, False) for c, k in _PLAIN.items()}
for _make, _pair in _KEYS.items():
    CHAR_KEYS[_pair[0]] = (_make, False)
    CHAR_KEYS[_pair[1]] = (_make, True)


def text_scancodes(text: str) -> list[int]:
    out: list[int] = []
    for ch in text:
        key = CHAR_KEYS.get(ch)
        if key is None:
            continue
        make, shift = key
        out += [SHIFT_MAKE, make, make | 0x80, SHIFT_BREAK] if shift else [make, make | 0x80]
    return out
