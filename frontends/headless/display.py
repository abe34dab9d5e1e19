"""IDisplay and IKeyboard of the VM process: the screen and the keyboard as API clients see them.

`controlvm screenshotpng` and scripts read the screen through IDisplay (DisplayImpl.cpp's
getScreenResolution / takeScreenShotToArray); `controlvm keyboardput*` and scripts type
through IKeyboard (KeyboardImpl.cpp's putScancodes, putCAD, releaseKeys).  Both need a
running (or paused) VM and hand the work to the VMM.
"""

from __future__ import annotations

import threading
import time

from vboxsvc.api import MachineState, VBoxError
from vboxsvc.api import errors as rc
from vboxsvc.api.enums import GuestMonitorStatus

from .console_errors import invalid_state

MONITORS = 1
KEY_WAIT_S = 30.0                   # how long putScancodes waits for the guest to make room in the queue
CAD = (0x1D, 0x38, 0xE0, 0x53, 0xE0, 0xD3, 0xB8, 0x9D)


def _live(process) -> None:
    if process.state not in (MachineState.Running, MachineState.Paused) or process.vm is None:
        raise invalid_state(process.state)


class HeadlessDisplay:
    __interface__ = "IDisplay"

    def __init__(self, process):
        self._p = process

    def _screen(self, screen_id: int):
        if not 0 <= screen_id < MONITORS:
            raise VBoxError(rc.E_INVALIDARG, f"Invalid screen {screen_id} (total {MONITORS})",
                            "IDisplay", "Display")
        _live(self._p)
        return self._p.vm.screen()

    def get_screen_resolution(self, screen_id: int):
        frame = self._screen(screen_id)
        return [frame.width, frame.height, frame.bpp or 32, 0, 0, int(GuestMonitorStatus.Enabled)]

    def take_screen_shot_to_array(self, screen_id: int, width: int, height: int, bitmap_format) -> bytes:
        from vmm.display.screenshot import convert

        frame = self._screen(screen_id)
        if width <= 0 or height <= 0:
            raise VBoxError(rc.E_INVALIDARG, "Invalid screenshot size", "IDisplay", "Display")
        try:
            return convert(frame.width, frame.height, frame.rgb, width, height, bitmap_format)
        except ValueError as e:
            raise VBoxError(rc.E_NOTIMPL if "format" in str(e) else rc.E_INVALIDARG, str(e),
                            "IDisplay", "Display") from None


class HeadlessKeyboard:
    __interface__ = "IKeyboard"

    def __init__(self, process):
        self._p = process
        self._lock = threading.Lock()
        self._pressed: set[tuple[int, int]] = set()     # (prefix, make code) of keys held down
        self._prefix = 0

    def put_scancode(self, scancode: int) -> None:
        self.put_scancodes([scancode])

    def put_scancodes(self, scancodes) -> int:
        _live(self._p)
        codes = [int(c) & 0xFF for c in scancodes]
        with self._lock:
            self._track(codes)
            sent, deadline = 0, time.monotonic() + KEY_WAIT_S
            while sent < len(codes):
                took = self._p.vm.put_scancodes(codes[sent:])
                sent += took
                if took:
                    deadline = time.monotonic() + KEY_WAIT_S         # the guest reads: keep waiting
                if sent < len(codes):
                    if time.monotonic() > deadline or self._p.state not in (MachineState.Running,
                                                                            MachineState.Paused):
                        raise VBoxError(rc.VBOX_E_IPRT_ERROR, "Could not send all scan codes to the virtual "
                                        "keyboard (VERR_TIMEOUT)", "IKeyboard", "Keyboard")
                    time.sleep(0.02)
        return sent

    def put_cad(self) -> None:
        self.put_scancodes(list(CAD))

    def release_keys(self) -> None:
        with self._lock:
            codes = []
            for prefix, make in sorted(self._pressed):
                codes += ([prefix] if prefix else []) + [make | 0x80]
        if codes:
            self.put_scancodes(codes)

    def _track(self, codes: list[int]) -> None:
        for c in codes:
            if c in (0xE0, 0xE1):
                self._prefix = c
                continue
            key = (self._prefix, c & 0x7F)
            self._prefix = 0
            if c & 0x80:
                self._pressed.discard(key)
            else:
                self._pressed.add(key)
