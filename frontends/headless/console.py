"""IConsole of the VM process: what other clients (vboxmanage controlvm, scripts, the service)
call on a running VM, exported on the bus.

Each method checks the machine state as VirtualBox's Console does (VBOX_E_INVALID_VM_STATE
with "Invalid machine state: X" otherwise) and hands the work to the VM process, which owns
the VMM and reports the state changes.
"""

from __future__ import annotations

from vboxsvc.api import MachineState, VBoxError
from vboxsvc.api import errors as rc

from .console_errors import invalid_state


class HeadlessConsole:
    __interface__ = "IConsole"

    def __init__(self, process):
        self._p = process
        self._display = None
        self._keyboard = None
        self._vrde_info = None

    @property
    def machine(self):
        return self._p.session.machine

    @property
    def state(self) -> MachineState:
        return self._p.state

    @property
    def display(self):
        from .display import HeadlessDisplay
        if self._display is None:
            self._display = HeadlessDisplay(self._p)
        return self._display

    @property
    def vrde_server_info(self):
        if self._vrde_info is None:
            from .vrde import VrdeServerInfo
            self._vrde_info = VrdeServerInfo(self._p)
        return self._vrde_info

    @property
    def keyboard(self):
        from .display import HeadlessKeyboard
        if self._keyboard is None:
            self._keyboard = HeadlessKeyboard(self._p)
        return self._keyboard

    def power_up(self):
        raise invalid_state(self._p.state, "the virtual machine is already running")

    def power_down(self):
        return self._p.power_down()

    def reset(self) -> None:
        self._p.need(MachineState.Running)
        self._p.vm_call("reset")
        self._p.guestprops.reset()

    def pause(self) -> None:
        self._p.pause()

    def resume(self) -> None:
        self._p.resume()

    def power_button(self) -> None:
        self._p.need(MachineState.Running)
        self._p.vm.power_button()
        self._p.log.info("Console: ACPI power button pressed")

    def sleep_button(self) -> None:
        self._p.need(MachineState.Running)
        raise VBoxError(rc.VBOX_E_PDM_ERROR,
                        "Sending sleep button event failed (the vboxpy ACPI device has no "
                                             "sleep button)", "IConsole", "ConsoleWrap")

    def save_state(self):
        return self._p.save_state()

    def get_power_button_handled(self) -> bool:
        return self._p.power_button_presses > 0 and self._p.state in (MachineState.Stopping,
                                                                       MachineState.PoweredOff)

    def get_guest_entered_acpi_mode(self) -> bool:
        # the vboxpy ACPI device starts with SCI_EN set (no SMI handshake): ACPI mode from power-on
        return self._p.state in (MachineState.Running, MachineState.Paused)

    def on_medium_change(self, controller: str, port: int, device: int, location: str) -> None:
        """The service mounted a disc in (or removed it from) a DVD drive of the running VM."""
        self._p.need(MachineState.Running, MachineState.Paused)
        self._p.change_medium(controller, int(port), int(device), location)

    # -- guest properties and transient shared folders (guestprops.py) ------------------------------
    def access_guest_property(self, name: str, value: str, flags: str, access_mode: int):
        return self._p.guestprops.access(name, value, flags, access_mode)

    def enumerate_guest_properties(self, patterns: str):
        return self._p.guestprops.enumerate(patterns)

    @property
    def shared_folders(self):
        return self._p.transient_folders.list()

    def create_shared_folder(self, name: str, host_path: str, writable: bool, automount: bool,
                             auto_mount_point: str = "") -> None:
        self._p.need(MachineState.Running, MachineState.Paused)
        self._p.transient_folders.create(name, host_path, writable, automount, auto_mount_point)
        self._p.log.info("Console: transient shared folder '%s' -> '%s'", name, host_path)
        self._p.shared_folders_changed(self._p.transient_folders.list())

    def remove_shared_folder(self, name: str) -> None:
        self._p.need(MachineState.Running, MachineState.Paused)
        self._p.transient_folders.remove(name)
        self._p.shared_folders_changed(self._p.transient_folders.list())

    def take_snapshot_online(self, state_file: str, disks, pause: bool = True):
        return self._p.take_snapshot_online(state_file, disks, pause)

    def on_nat_redirect_rule_change(self, slot: int, remove: bool, name: str, proto: int, host_ip: str,
                                    host_port: int, guest_ip: str, guest_port: int) -> None:
        self._p.nat_redirect_changed(slot, remove, name, proto, host_ip, host_port, guest_ip, guest_port)

    def on_network_adapter_change(self, slot: int, cable_connected: bool) -> None:
        self._p.set_link_state(slot, cable_connected)

    def merge_snapshot_online(self, jobs, known):
        # deleting a snapshot of the running VM; the merges run here (vmm.savedstate)
        from vmm.savedstate import console_merge_online
        self._p.need(MachineState.Running, MachineState.Paused)
        return console_merge_online(self._p.vm, jobs, known)
