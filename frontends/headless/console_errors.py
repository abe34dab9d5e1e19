"""The errors IConsole and its children (IDisplay, IKeyboard, shared folders) report, with the
component names VirtualBox's ConsoleImpl.cpp gives them; apart from the console so that its
children need not import it."""

from __future__ import annotations

from vboxsvc.api import MachineState, VBoxError, state_name
from vboxsvc.api import errors as rc


def console_error(code: int, text: str) -> VBoxError:
    return VBoxError(code, text, "IConsole", "ConsoleWrap")


def invalid_state(state: MachineState, action: str = "") -> VBoxError:
    text = f"Invalid machine state: {state_name(state)}"
    if action:
        text += f" ({action})"
    return console_error(rc.VBOX_E_INVALID_VM_STATE, text)
