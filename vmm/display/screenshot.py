"""A screen picture in the formats IDisplay.takeScreenShotToArray hands out (VirtualBox's BitmapFormat).

Callers ask for a size; VirtualBox scales the guest screen to it, so this does too (nearest
neighbour).  BGR0/BGRA are 4 bytes per pixel in memory order B, G, R, 0/255 (the frame
buffer layout of VirtualBox's IFramebuffer), RGBA likewise, PNG a file.
"""

from __future__ import annotations

from vmm.display.png import encode_rgb

MAX_SIDE = 8192
# VirtualBox's BitmapFormat values (FourCCs, VirtualBox.xidl); IDisplay hands the API's value through
FMT_BGR0 = 0x30524742
FMT_BGRA = 0x41524742
FMT_RGBA = 0x41424752
FMT_PNG = 0x20474E50


def scale_rgb(width: int, height: int, rgb: bytes, new_w: int, new_h: int) -> bytes:
    if (new_w, new_h) == (width, height):
        return rgb
    xs = [(x * width // new_w) * 3 for x in range(new_w)]
    out = bytearray()
    stride = width * 3
    for y in range(new_h):
        row = rgb[(y * height // new_h) * stride:(y * height // new_h + 1) * stride]
        out += b"".join(row[x:x + 3] for x in xs)
    return bytes(out)


def convert(width: int, height: int, rgb: bytes, new_w: int, new_h: int, fmt: int) -> bytes:
    """The picture at new_w x new_h in bitmap format `fmt` (ValueError for a bad size or format)."""
    if not (0 < new_w <= MAX_SIDE and 0 < new_h <= MAX_SIDE):
        raise ValueError(f"invalid screenshot size {new_w}x{new_h}")
    data = scale_rgb(width, height, rgb, new_w, new_h)
    fmt = int(fmt)
    if fmt == FMT_PNG:
        return encode_rgb(new_w, new_h, data)
    out = bytearray(new_w * new_h * 4)
    if fmt in (FMT_BGR0, FMT_BGRA):
        out[0::4], out[1::4], out[2::4] = data[2::3], data[1::3], data[0::3]
    elif fmt == FMT_RGBA:
        out[0::4], out[1::4], out[2::4] = data[0::3], data[1::3], data[2::3]
    else:
        raise ValueError(f"unsupported bitmap format {fmt:#x}")
    if fmt != FMT_BGR0:
        out[3::4] = b"\xff" * (new_w * new_h)
    return bytes(out)
