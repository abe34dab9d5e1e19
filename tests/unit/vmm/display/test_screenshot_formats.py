"""The screenshot encoder's format numbers are VirtualBox's BitmapFormat values: the VM process
passes IDisplay's argument straight through, and the VMM does not import the API to know them."""

from vboxsvc.api.enums import BitmapFormat
from vmm.display import screenshot


def test_format_numbers_are_the_apis():
    assert screenshot.FMT_BGR0 == BitmapFormat.BGR0
    assert screenshot.FMT_BGRA == BitmapFormat.BGRA
    assert screenshot.FMT_RGBA == BitmapFormat.RGBA
    assert screenshot.FMT_PNG == BitmapFormat.PNG


def test_each_format_encodes_a_two_pixel_picture():
    rgb = bytes([1, 2, 3, 4, 5, 6])
    assert screenshot.convert(2, 1, rgb, 2, 1, BitmapFormat.BGR0) == bytes([3, 2, 1, 0, 6, 5, 4, 0])
    assert screenshot.convert(2, 1, rgb, 2, 1, BitmapFormat.BGRA) == bytes([3, 2, 1, 255, 6, 5, 4, 255])
    assert screenshot.convert(2, 1, rgb, 2, 1, BitmapFormat.RGBA) == bytes([1, 2, 3, 255, 4, 5, 6, 255])
    assert screenshot.convert(2, 1, rgb, 2, 1, BitmapFormat.PNG).startswith(b"\x89PNG")
