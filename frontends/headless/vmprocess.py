"""The VM process: one machine's VMM, driven by its VM session and its exported IConsole.

Life of the process (VirtualBox's Console/VBoxHeadless split, in one class):
open the VM session (VM lock), read the settings into CFGM, pick the engine, build the
Machine, register the console, restore or boot (Starting/Restoring -> Running), then wait
for the end: the console's power down (Stopping -> PoweredOff) or save state (Saving ->
Saved), the guest powering off (Stopping -> PoweredOff), a guest reboot (a reset: the VM
runs on) or an engine error (Stuck, kept until powered down).  Then close the VM, let the
last progress answer reach its caller, and unlock.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import threading
import time

from vboxsvc.api import LockType, MachineState, VBoxError, is_online, state_name
from vboxsvc.api import errors as rc
from vboxsvc.ipc.client import connect
from vboxsvc.ipc.localobjects import LocalProgress
from vboxsvc.ipc.vmlock import VmLock, VmLockBusy
from vmm.cfgm import CfgNode
from vmm.engine_select import EngineSelectError, choose_engine, force_hm_requested
from vmm.savedstate import SavedStateError, console_take_snapshot
from vmm.serial.backends import SerialBackendError
from vmm.vm import Machine, MachineError

from .console import HeadlessConsole, invalid_state
from .console_state import console_restore_if_saved, console_save_state
from .guestprops import GuestPropertyStore, TransientFolders
from .machine_config import ConfigError, add_shared_folders, describe_error, read_settings
from .vrde import VRDE_POLL_S, start_vrde, vrde_settings

log = logging.getLogger("vboxpy.headless")

LINGER_S = 2.0          # how long a finished progress waits for its caller to look at it
STOP_TIMEOUT_S = 15.0
LOCK_RETRY_S = 5.0      # how long to wait for another client's brief session on an offline machine
VMLOCK_RETRY_S = 1.0    # a service peeking at the lock file holds it shared for a moment
REATTACH_RETRY_S = 0.5  # between attempts to reach the next service after ours died


class StartError(Exception):
    """The VM could not be started; the text is for the log and the terminal."""


class WatchedProgress(LocalProgress):
    """A LocalProgress that knows when its caller has seen the result, so the process can exit."""

    def __init__(self, description: str):
        self.seen = threading.Event()
        super().__init__(description)

    @property
    def result_code(self) -> int:
        if self.completed:
            self.seen.set()
        return self._rc

    @result_code.setter
    def result_code(self, value: int) -> None:
        self._rc = value


class VmProcess:
    def __init__(self, client, vm_ref: str, say=None):
        self.client = client
        self.vm_ref = vm_ref
        self.say = say or (lambda text: None)    # the terminal (foreground use)
        self.log = log
        self.session = None
        self.sm = None
        self.vrde = None
        self._vrde_cfg: dict | None = None
        self._vrde_next = 0.0
        self.vm: Machine | None = None
        self.state = MachineState.PoweredOff
        self.settings = None
        self.power_button_presses = 0
        self._lock = threading.RLock()
        self._ending = False                  # a power down / save state / guest power off is under way
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._last_progress: WatchedProgress | None = None
        self._t_start = 0.0
        self.vmlock: VmLock | None = None
        self._closing = threading.Event()
        self.guestprops = GuestPropertyStore(push=self._push_guest_property)
        self.transient_folders = TransientFolders()

    # -- state ---------------------------------------------------------------------------------------
    def report(self, state: MachineState) -> None:
        with self._lock:
            old = self.state
            if self.vmlock is not None:
                self.vmlock.update(state.name)      # what a next service learns if ours dies
            try:
                self.sm.update_state(state)
            except VBoxError as e:
                # the service died (or its connection is being replaced): the VM goes on; the next
                # service learns the state from the lock file or when we re-attach
                if e.result_code != rc.NS_ERROR_CALL_FAILED:
                    raise
                log.warning("The VirtualBox service did not take the state %s: %s", state_name(state),
                            e.text)
            self.state = state
        log.info("Changing the VM state from '%s' to '%s'", state_name(old).upper(),
                 state_name(state).upper())

    def need(self, *states: MachineState) -> None:
        if self.state not in states or self._ending:
            raise invalid_state(self.state)

    # -- start-up ------------------------------------------------------------------------------------
    def open(self) -> None:
        """Take the VM lock and read the machine's settings through the API."""
        vbox = self.client.virtualbox
        machine = vbox.find_machine(self.vm_ref)
        self._take_vmlock(machine.settings_file_path)
        self.session = self.client.session()
        deadline = time.monotonic() + LOCK_RETRY_S
        while True:
            try:
                machine.lock_machine(self.session, LockType.VM)
                break
            except VBoxError as e:
                # a client's short-lived session (showvminfo locks Shared) may hold an offline machine
                # for a moment: a hand-started VM process waits for it; a running VM is final
                if e.result_code != rc.VBOX_E_INVALID_OBJECT_STATE or is_online(machine.state) \
                        or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.sm = self.session.machine
        self.state = MachineState(self.sm.state)
        self.settings = read_settings(self.sm)
        log.info("Machine: '%s' {%s} (OS type %s)", self.settings.name, self.settings.uuid,
                 self.settings.os_type_id)
        for note in self.settings.notes:
            log.warning("Warning: %s", note)

    def _take_vmlock(self, settings_file: str) -> None:
        """The machine's lock file, held until we exit: never two VM processes for one machine,
        even across a service that died (see vboxsvc/ipc/vmlock.py)."""
        lock = VmLock(settings_file)
        deadline = time.monotonic() + VMLOCK_RETRY_S
        while True:
            try:
                lock.acquire()
                break
            except VmLockBusy as e:
                if time.monotonic() > deadline:
                    raise StartError(f"The machine is already running: {e}") from None
                time.sleep(0.02)
        self.vmlock = lock

    # -- the service dying under us ----------------------------------------------------------------------
    def watch_service(self) -> None:
        threading.Thread(target=self._service_watcher, name="service-watch", daemon=True).start()

    def _service_watcher(self) -> None:
        while not self._closing.is_set():
            try:
                fd = os.pidfd_open(self.client.service_pid)
            except OSError:
                fd = None       # already gone
            try:
                while fd is not None and not self._closing.is_set():
                    if select.select([fd], [], [], 0.5)[0]:
                        break
            finally:
                if fd is not None:
                    os.close(fd)
            if self._closing.is_set():
                return
            log.warning("The VirtualBox service (pid %d) is gone: the VM keeps running, re-attaching",
                        self.client.service_pid)
            self._reattach()

    def _reattach(self) -> None:
        """Connect to the next service (starting one if needed) and take our machine back."""
        old = self.client
        while not self._closing.is_set():
            new = None
            try:
                new = connect(name="vboxheadless")
                machine = new.virtualbox.find_machine(self.settings.uuid)
                session = new.session()
                machine.lock_machine(session, LockType.VM)
                session.register_console(new.export(HeadlessConsole(self), "IConsole"))
            except (VBoxError, OSError) as e:
                log.warning("re-attaching failed, retrying: %s", getattr(e, "text", e))
                if new is not None:
                    new._teardown()
                time.sleep(REATTACH_RETRY_S)
                continue
            with self._lock:
                self.client, self.session, self.sm = new, session, session.machine
                try:
                    if MachineState(self.sm.state) != self.state:   # changed after the lock file was read
                        self.sm.update_state(self.state)
                except VBoxError as e:
                    log.warning("The VirtualBox service did not take the state %s: %s",
                                state_name(self.state), e.text)
            old._teardown()
            log.info("Re-attached to the VirtualBox service (pid %d) in state %s", new.service_pid,
                     state_name(self.state))
            return

    def build(self) -> None:
        s = self.settings
        try:
            choice = choose_engine(s.hwvirtex, force_hm_requested(s.force_hm))
        except EngineSelectError as e:
            raise StartError(str(e)) from None
        s.cfg.set("Engine", choice.kind)
        log.info("EM: %s", choice.reason)
        log.info("CFGM dump:")
        for line in s.cfg.dump():
            log.info("  %s", line)
        try:
            # a Saved machine loads its state file instead of the boot files (vmm.savedstate)
            restoring = self.state in (MachineState.Saved, MachineState.AbortedSaved)
            self.vm = Machine(s.cfg, on_stop=self._vm_stopped, on_marker=self._marker, restoring=restoring)
        except (MachineError, SerialBackendError, OSError, ValueError) as e:
            raise StartError(str(e)) from None
        for line in self.vm.describe():
            log.info("%s", line)

    def power_up(self) -> None:
        try:
            restored = console_restore_if_saved(self.vm, self.sm)
        except SavedStateError as e:
            self.state = MachineState(self.sm.state)
            raise StartError(f"cannot restore the saved state: {e}") from None
        if restored:
            self.state = MachineState.Restoring
            log.info("Restored the saved state from '%s'", self.sm.state_file_path)
        else:
            self.report(MachineState.Starting)
        self._start_guest_properties()
        self.session.register_console(self.client.export(HeadlessConsole(self), "IConsole"))
        self._t_start = time.monotonic()
        self.vm.start()
        self.report(MachineState.Running)
        self._vrde_cfg = vrde_settings(self.sm)
        self.vrde = start_vrde(self.vm, self._vrde_cfg, self.settings.name)
        self._vrde_next = time.monotonic() + VRDE_POLL_S

    def shared_folders_changed(self, transient) -> None:
        """The console's transient shared folders changed (ISharedFolder-like objects): the running
        VM's shared-folder service gets the machine's folders and these at once.  A transient folder
        hides a machine folder of the same name, as in VirtualBox's Console."""
        if self.vm is None or self.settings is None:
            return
        extra = CfgNode()
        add_shared_folders(self.sm, extra, transient)
        folders = {f.name.lower(): f for f in Machine._folder_specs(self.settings.cfg)}
        folders.update({f.name.lower(): f for f in Machine._folder_specs(extra)})
        self.vm.set_shared_folders(list(folders.values()))
        log.info("Shared folders: %s", ", ".join(sorted(f.name for f in folders.values())) or "none")

    def _start_guest_properties(self) -> None:
        """The store starts from the saved properties; the host information goes in as VirtualBox's
        Console publishes it (transient, read-only for the guest)."""
        self.guestprops.load(self.sm.enumerate_guest_properties(""))
        vbox = self.client.virtualbox
        version, revision = vbox.version, vbox.revision
        for name, value in (("/VirtualBox/HostInfo/VBoxVer", version),
                            ("/VirtualBox/HostInfo/VBoxVerExt", version),
                            ("/VirtualBox/HostInfo/VBoxRev", str(revision))):
            self.guestprops.publish(name, value, "TRANSIENT, RDONLYGUEST")

    def _push_guest_property(self, name: str, value: str, timestamp: int, flags: str) -> None:
        try:
            self.sm.push_guest_property(name, value, timestamp, flags)
        except VBoxError as e:
            log.warning("cannot report guest property '%s' to the service: %s", name, e.text)

    # -- guest events (vCPU thread) --------------------------------------------------------------------
    def _vm_stopped(self, kind: str, detail: str) -> None:
        self._events.put(("stopped", kind, detail))

    def _marker(self, value: int, ns: int) -> None:
        log.info("Guest boot marker %#x at %.3f s guest time, %.3f s after power-up", value, ns / 1e9,
                 time.monotonic() - self._t_start)

    def request_power_off(self, why: str) -> None:
        """From a signal handler: power the VM off from the main loop."""
        self._events.put(("poweroff", why))

    def log_debug_info(self) -> None:
        """From a signal handler (SIGUSR1): the machine's live state into VBox.log."""
        vm = getattr(self, "vm", None)
        if vm is None:
            log.info("Debug info: no machine yet")
            return
        for line in vm.debug_info():
            log.info("Debug info: %s", line)

    # -- console actions (bus threads) -----------------------------------------------------------------
    def vm_call(self, action: str) -> None:
        future = getattr(self.vm, action)()
        future.result(STOP_TIMEOUT_S)
        if action == "reset":
            log.info("Console: VM reset")

    def pause(self) -> None:
        with self._lock:
            self.need(MachineState.Running)
            self.vm.pause().result(STOP_TIMEOUT_S)
            self.report(MachineState.Paused)

    def resume(self) -> None:
        with self._lock:
            self.need(MachineState.Paused)
            self.vm.resume().result(STOP_TIMEOUT_S)
            self.report(MachineState.Running)

    def power_down(self) -> WatchedProgress:
        with self._lock:
            self.need(MachineState.Running, MachineState.Paused, MachineState.Stuck)
            self._ending = True
            progress = self._last_progress = WatchedProgress("Powering off the virtual machine")
            self.report(MachineState.Stopping)
        threading.Thread(target=self._power_down, args=(progress, "console power down"), daemon=True).start()
        return progress

    def _power_down(self, progress: WatchedProgress | None, why: str) -> None:
        error = None
        try:
            self._stop_vm()
            self.report(MachineState.PoweredOff)
            log.info("VM powered off (%s)", why)
        except Exception as e:  # the service still gets a final state through our exit (Aborted)
            log.exception("power off failed")
            error = VBoxError(rc.E_FAIL, f"Powering off the VM failed: {e}", "IConsole", "ConsoleWrap")
        if progress is not None:
            progress.complete(error)
        self._events.put(("finished", why))

    def _stop_vm(self) -> None:
        self.vm.power_off()    # a future nobody waits for: a stuck VM's EM has already stopped
        if not self.vm.wait(STOP_TIMEOUT_S):
            raise RuntimeError(f"the vCPU did not stop within {STOP_TIMEOUT_S:.0f} s")

    def save_state(self) -> WatchedProgress:
        with self._lock:
            self.need(MachineState.Running, MachineState.Paused)
            self._ending = True
            progress = self._last_progress = WatchedProgress("Saving the execution state of the "
                                                             "virtual machine")
        threading.Thread(target=self._save_state, args=(progress,), daemon=True).start()
        return progress

    def _save_state(self, progress: WatchedProgress) -> None:
        before = self.state
        self.state = MachineState.Saving
        try:
            result = console_save_state(self.vm, self.sm)
        except Exception as e:
            self.state = before
            self._ending = False
            log.error("Saving the VM state failed: %s", e)
            progress.complete(VBoxError(rc.VBOX_E_FILE_ERROR, f"Failed to save the machine state: {e}",
                                        "IConsole", "ConsoleWrap"))
            return
        self.state = MachineState.Saved
        log.info("Saved the VM state to '%s' (%d bytes, vCPU held %.3f s)", result.path, result.size,
                 result.seconds)
        try:
            self._stop_vm()
        except Exception:
            log.exception("stopping the VM after saving its state failed")
        progress.complete()
        self._events.put(("finished", "state saved"))

    def nat_redirect_changed(self, slot: int, remove: bool, name: str, proto: int, host_ip: str,
                             host_port: int,
                             guest_ip: str, guest_port: int) -> None:
        """Console::onNATRedirectRuleChange: a rule that cannot be bound is logged, as DrvNAT does."""
        from vmm.net.nat import NatRule
        if self.vm is None or self.state not in (MachineState.Running, MachineState.Paused):
            return
        try:
            self.vm.nat_redirect(slot, remove, NatRule(name, proto == 0, host_ip, int(host_port), guest_ip,
                                                       int(guest_port)), name)
        except MachineError as e:
            log.error("NAT#%d: configuration error: %s", slot, e)
            return
        log.info("NAT#%d: %s redirect '%s'", slot, "removed" if remove else "added", name)

    def set_link_state(self, slot: int, up: bool) -> None:
        if self.vm is None or self.state not in (MachineState.Running, MachineState.Paused):
            return
        try:
            self.vm.set_link_state(slot, up).result(STOP_TIMEOUT_S)
        except MachineError as e:
            log.warning("NIC#%d: %s", slot, e)
            return
        log.info("NIC#%d: link %s", slot, "up" if up else "down")

    def change_medium(self, controller: str, port: int, device: int, location: str) -> None:
        with self._lock:
            self.vm.change_medium(controller, port, device, location)
        log.info("Medium change: %s port %d device %d now holds %s", controller, port, device,
                 f"'{location}'" if location else "no medium")

    def take_snapshot_online(self, state_file: str, disks, pause: bool = True):
        with self._lock:
            self.need(MachineState.Running, MachineState.Paused)
            result = console_take_snapshot(self.vm, state_file, disks, pause)
        log.info("Online snapshot: state in '%s' (%d bytes), %d disk(s) switched to differencing images",
                 state_file, result.size, len(disks))
        return result.size

    def _vrde_tick(self) -> None:
        """Follow VRDE setting changes made while the VM runs (start, stop or move the VNC server)."""
        now = time.monotonic()
        if now < self._vrde_next or self.vm is None or self.state not in (MachineState.Running,
                                                                          MachineState.Paused):
            return
        self._vrde_next = now + VRDE_POLL_S
        try:
            want = vrde_settings(self.sm)
        except Exception as e:
            # the service may be gone or restarting (the VM process re-attaches meanwhile): a missed
            # look at the settings is retried at the next tick, never a reason to stop the VM
            log.debug("VRDE: settings not readable now (%s)", e)
            return
        if want == self._vrde_cfg:
            return
        self._vrde_cfg = want
        old, self.vrde = self.vrde, None
        if old is not None:
            old.close()
            log.info("VRDE: server stopped")
        self.vrde = start_vrde(self.vm, want, self.settings.name)

    # -- main loop -------------------------------------------------------------------------------------
    def run(self) -> str:
        """Until the VM ends; returns how it ended ('poweroff', 'saved', ...)."""
        while True:
            try:
                event = self._events.get(timeout=0.5)   # a timeout keeps signal handlers running promptly
            except queue.Empty:
                self._vrde_tick()
                continue
            if event[0] == "finished":
                return event[1]
            if event[0] == "poweroff":
                with self._lock:
                    if self._ending or self.state not in (MachineState.Running, MachineState.Paused,
                                                          MachineState.Stuck):
                        continue
                    self._ending = True
                    self.report(MachineState.Stopping)
                threading.Thread(target=self._power_down, args=(None, event[1]), daemon=True).start()
                continue
            _, kind, detail = event
            if kind == "poweroff":
                with self._lock:
                    if self._ending:
                        continue   # the console's power down / save state finishes the job
                    self._ending = True
                    self.report(MachineState.Stopping)
                log.info("Guest: %s", detail)
                self._power_down(None, "guest power off")
            else:
                log.error("!!! VCPU 0 is stuck (guru meditation): %s", detail)
                self.say(f"VM is stuck (guru meditation): {detail}")
                with self._lock:
                    if not self._ending:
                        self.report(MachineState.Stuck)

    def close(self) -> None:
        """Free the VM, let the last progress reach its caller, drop the lock."""
        self._closing.set()
        if self.vm is not None:
            if self._t_start:
                stats = ", ".join(f"{k} {v}" for k, v in getattr(self.vm.em, "stats", {}).items())
                log.info("VM ran %.3f s after power-up; guest resets %d; EM: %s",
                         time.monotonic() - self._t_start, self.vm.resets, stats)
            if self.vrde is not None:
                self.vrde.close()
            self.vm.close()
        p = self._last_progress
        if p is not None:
            p.seen.wait(LINGER_S)
            time.sleep(0.05)   # the answer carrying the result leaves the bus thread
        if self.session is not None:
            try:
                self.session.unlock_machine()
            except VBoxError as e:
                log.warning("unlocking the machine: %s", e.text)
        if self.vmlock is not None:
            self.vmlock.release()


def start_error_text(exc: BaseException) -> str:
    if isinstance(exc, (StartError, ConfigError)):
        return str(exc)
    return describe_error(exc)
