"""controlvm screenshotpng / keyboardputscancode / keyboardputstring / keyboardputfile / vrde /
vrdeport / vrdeproperty (VBoxManageControlVM.cpp): the screen, the keyboard and the remote
display of a running VM.

The arguments are checked before the VM is locked; each action becomes one function of the
VM's session and IConsole, run under the Shared lock by `controlvm`.
"""

from __future__ import annotations

import errno
import os

from .api import call
from .keymap import text_scancodes
from .output import CommandFailed, msg_lines

_CTL_FILE = "VBoxManageControlVM.cpp"
BITMAP_FORMAT_PNG = 0x20474E50
KEY_CHUNK = 128                   # scan codes per IKeyboard call
SCREEN_ACTIONS = ("screenshotpng", "keyboardputscancode", "keyboardputstring", "keyboardputfile", "vrde",
                  "vrdeport", "vrdeproperty")
_ERRNO_RC = {errno.ENOENT: "VERR_PATH_NOT_FOUND", errno.EACCES: "VERR_ACCESS_DENIED",
             errno.EISDIR: "VERR_IS_A_DIRECTORY", errno.EROFS: "VERR_WRITE_PROTECT",
             errno.ENOSPC: "VERR_DISK_FULL"}


def _fail(text: str) -> CommandFailed:
    return CommandFailed(msg_lines("error: ", text))


def _iprt(exc: OSError) -> str:
    return _ERRNO_RC.get(exc.errno, "VERR_GENERAL_FAILURE")


def screen_job(action: str, args: list[str]):
    """The work of `action` as a function of (session, console); argument errors raise at once."""
    job = _job(action, args)
    if action.startswith("vrde"):
        return job
    return lambda session, console: job(console)


def _job(action: str, args: list[str]):
    if action.startswith("vrde"):
        return _vrde_job(action, args)
    if action == "screenshotpng":
        return _screenshot_job(args)
    if action == "keyboardputscancode":
        if not args:
            raise _fail("Missing argument to 'keyboardputscancode'. Expected IBM PC AT set 2 keyboard "
                        "scancode(s) as hex byte(s).")
        codes = []
        for a in args:
            try:
                if len(a) != 2:
                    raise ValueError
                codes.append(int(a, 16))
            except ValueError:
                raise _fail(f"Error: '{a}' is not a hex byte!") from None
        return lambda console: _put(console, codes)
    if action == "keyboardputstring":
        if not args:
            raise _fail("Missing argument to 'keyboardputstring'. Expected ASCII string(s).")
        return lambda console: _put(console, text_scancodes(" ".join(args)))
    if not args:
        raise _fail("Missing argument to 'keyboardputfile'. Expected file name.")
    if len(args) > 1:
        raise _fail("Too many arguments to 'keyboardputfile'.")
    try:
        with open(args[0], "rb") as f:
            text = f.read().decode("latin-1")
    except OSError as e:
        raise _fail(f"Cannot open file '{args[0]}' ({_iprt(e)})") from None
    return lambda console: _put(console, text_scancodes(text))


def _put(console, codes: list[int]) -> None:
    with call("console->COMGETTER(Keyboard)(pKeyboard.asOutParam())", 600, _CTL_FILE):
        keyboard = console.keyboard
    for i in range(0, len(codes), KEY_CHUNK):   # long texts in parts: each call returns while the guest types
        with call("pKeyboard->PutScancodes(ComSafeArrayAsInParam(saScancodes), &codesStored)", 610,
                  _CTL_FILE):
            keyboard.put_scancodes(codes[i:i + KEY_CHUNK])


def _screenshot_job(args: list[str]):
    if not args or len(args) > 2:
        raise _fail("Incorrect number of parameters")
    path, screen = args[0], 0
    if len(args) == 2:
        try:
            screen = int(args[1], 0)
            if not 0 <= screen <= 0xFFFFFFFF:
                raise ValueError
        except ValueError:
            raise _fail(f"Error parsing display number '{args[1]}'") from None

    def job(console) -> None:
        with call("console->COMGETTER(Display)(pDisplay.asOutParam())", 1715, _CTL_FILE):
            display = console.display
        with call("pDisplay->GetScreenResolution(iScreen, &ulWidth, &ulHeight, &ulBpp, &xOrigin, &yOrigin, "
                  "&monitorStatus)", 1724, _CTL_FILE):
            width, height = display.get_screen_resolution(screen)[:2]
        with call("pDisplay->TakeScreenShotToArray(iScreen, ulWidth, ulHeight, BitmapFormat_PNG, "
                  "ComSafeArrayAsOutParam(saScreenshot))", 1727, _CTL_FILE):
            data = display.take_screen_shot_to_array(screen, width, height, BITMAP_FORMAT_PNG)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as e:
            raise _fail(f"Failed to create file '{path}' ({_iprt(e)})") from None
        try:
            os.write(fd, data)
        except OSError as e:
            raise _fail(f"Failed to write screenshot to file '{path}' ({_iprt(e)})") from None
        finally:
            os.close(fd)
    return job


def _vrde_job(action: str, args: list[str]):
    if not args:
        raise _fail(f"Missing argument to '{action}'")
    value = args[0]
    if action == "vrde" and value not in ("on", "off"):
        raise _fail(f"Invalid remote desktop server state '{value}'")
    if action == "vrdeproperty" and "=" not in value:
        raise _fail(f"Invalid --vrdeproperty argument '{value}'")

    def job(session, console) -> None:
        with call("sessionMachine->COMGETTER(VRDEServer)(vrdeServer.asOutParam())", 980, _CTL_FILE):
            server = getattr(session.machine, "vrde_server", None)
        if server is None:
            raise _fail("The VM has no remote desktop server settings")
        if action == "vrde":
            with call(f"vrdeServer->COMSETTER(Enabled)({'TRUE' if value == 'on' else 'FALSE'})", 990,
                      _CTL_FILE):
                server.enabled = value == "on"
        elif action == "vrdeport":
            with call('vrdeServer->SetVRDEProperty(Bstr("TCP/Ports").raw(), vrdeportBstr.raw())', 1010,
                      _CTL_FILE):
                server.set_vrde_property("TCP/Ports", "0" if value == "default" else value)
        else:
            key, _, val = value.partition("=")
            with call("vrdeServer->SetVRDEProperty(Bstr(strProperty).raw(), Bstr(strValue).raw())", 1040,
                      _CTL_FILE):
                server.set_vrde_property(key, val)
    return job
