"""VMMDev: VirtualBox's guest device (PCI 80ee:cafe), the door Guest Additions and Linux's
in-tree vboxguest driver talk through (VirtualBox's Devices/VMMDev/VMMDev.cpp, VMMDev.h).

BAR0 is an I/O window: the guest writes the physical address of a request (a 24-byte header
and a body) to its first port; the request is read from guest RAM, executed, and its status
written back into the header's rc.  BAR1 is VMMDevMemory: version, size and the "events
pending" flag the interrupt handler reads before it acknowledges the events.  The interrupt
is level-triggered on INTA while (pending events & the guest's filter mask) is non-zero.

HGCM requests (connect, disconnect, call) answer VINF_HGCM_ASYNC_EXECUTE at once and run on
the HGCM worker (vmm.hgcm.core); their completion comes back to the device thread through a
due-now timer, writes the results and the DONE flag into the request, and raises EVENT_HGCM.
"""

from __future__ import annotations

import collections
import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vmm.devices import hgcm_params
from vmm.devices import vmmdev_types as T
from vmm.devices.base import IrqLine
from vmm.devices.pci import BAR_IO, BAR_MEM32, PciFunction, PciFunctionState
from vmm.memory import GuestMemory, GuestMemoryError

log = logging.getLogger("vboxpy.vmmdev")

MAX_PENDING_HGCM = 4096
# requests a guest may make before it has reported its additions (VMMDev.cpp's dispatcher)
_BEFORE_GUEST_INFO = (T.REQ_REPORT_GUEST_INFO, T.REQ_REPORT_GUEST_INFO2, T.REQ_GET_HOST_VERSION,
                      T.REQ_WRITE_CORE_DUMP)


@dataclass
class VmmDevState:
    pci: PciFunctionState
    host_events: int = 0
    filter_mask: int = 0
    guest_caps: int = 0
    mouse_features: int = 0
    additions_ok: bool = False
    heartbeat: bool = False
    guest_info: dict = field(default_factory=dict)


@dataclass
class _HgcmCommand:
    gpa: int
    kind: int
    is64: bool = False
    parms: list = field(default_factory=list)
    cancelled: bool = False


class _Ports:
    def __init__(self, dev: VmmDev):
        self.dev = dev

    def read(self, offset: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == T.VMMDEV_PORT_OFF_REQUEST and size == 4:
            self.dev.request(value)


class _Memory:
    """VMMDevMemory: u32Size, u32Version, then V1_04.fHaveEvents / V1_03 (host events, mask)."""

    def __init__(self, dev: VmmDev):
        self.dev = dev

    def _image(self) -> bytes:
        d = self.dev
        return struct.pack("<IIII", T.VMMDEV_MEMORY_SIZE, T.VMMDEV_MEMORY_VERSION,
                           1 if d.host_events & d.filter_mask else 0, d.filter_mask)

    def read(self, offset: int, size: int) -> int:
        img = self._image()
        if offset >= len(img):
            return 0
        return int.from_bytes(img[offset:offset + size].ljust(size, b"\0"), "little")

    def write(self, offset: int, size: int, value: int) -> None:
        pass                                    # the guest's view is read-only here


class VmmDev(PciFunction):
    def __init__(self, memory: GuestMemory, hgcm=None, clock=None, irq: IrqLine | None = None,
                 on_guest_info: Callable[[dict], None] | None = None):
        super().__init__(T.VMMDEV_VENDOR_ID, T.VMMDEV_DEVICE_ID, T.VMMDEV_CLASS, interrupt_pin=1, irq=irq)
        self.memory = memory
        self.hgcm = hgcm
        self.on_guest_info = on_guest_info
        self.add_bar(0, T.VMMDEV_PORT_RANGE, BAR_IO, _Ports(self))
        self.add_bar(1, T.VMMDEV_RAM_SIZE, BAR_MEM32, _Memory(self))
        self.host_events = 0
        self.filter_mask = 0
        self.guest_caps = 0
        self.mouse_features = 0
        self.additions_ok = False
        self.heartbeat = False
        self.last_heartbeat: float | None = None
        self.guest_info: dict = {}
        self._pending: dict[int, _HgcmCommand] = {}
        self._lock = threading.Lock()
        self._completions: collections.deque[Callable[[], None]] = collections.deque()
        self._timer = clock.new_timer(self.run_completions) if clock is not None else None
        self._handlers = {
            T.REQ_GET_MOUSE_STATUS: self._get_mouse_status, T.REQ_SET_MOUSE_STATUS: self._set_mouse_status,
            T.REQ_GET_HOST_VERSION: self._get_host_version, T.REQ_GET_HOST_TIME: self._get_host_time,
            T.REQ_GET_HYPERVISOR_INFO: self._get_hypervisor_info,
            T.REQ_SET_HYPERVISOR_INFO: self._set_hypervisor_info,
            T.REQ_ACKNOWLEDGE_EVENTS: self._acknowledge_events,
            T.REQ_CTL_GUEST_FILTER_MASK: self._ctl_filter_mask,
            T.REQ_REPORT_GUEST_INFO: self._report_guest_info,
            T.REQ_REPORT_GUEST_INFO2: self._report_guest_info2,
            T.REQ_REPORT_GUEST_STATUS: self._report_guest_status,
            T.REQ_REPORT_GUEST_CAPABILITIES: self._report_guest_caps,
            T.REQ_SET_GUEST_CAPABILITIES: self._set_guest_caps,
            T.REQ_GUEST_HEARTBEAT: self._guest_heartbeat,
            T.REQ_HEARTBEAT_CONFIGURE: self._heartbeat_configure,
            T.REQ_GET_MEM_BALLOON_CHANGE_REQUEST: self._get_balloon,
            T.REQ_CHANGE_MEM_BALLOON: self._change_balloon,
            T.REQ_HGCM_CONNECT: self._hgcm_connect, T.REQ_HGCM_DISCONNECT: self._hgcm_disconnect,
            T.REQ_HGCM_CALL32: self._hgcm_call, T.REQ_HGCM_CALL64: self._hgcm_call,
            T.REQ_HGCM_CANCEL: self._hgcm_cancel, T.REQ_HGCM_CANCEL2: self._hgcm_cancel2,
        }

    # --- events and the interrupt --------------------------------------------------------------
    def raise_events(self, events: int) -> None:
        self.host_events |= events & T.EVENT_VALID_MASK
        self._update_irq()

    def _update_irq(self) -> None:
        self.set_intx(bool(self.host_events & self.filter_mask))

    # --- the request port ----------------------------------------------------------------------
    def request(self, gpa: int) -> None:
        """A request at guest-physical `gpa`: run it, write its rc (and outputs) back."""
        mem = self.memory
        if not mem.contains(gpa, T.HEADER_SIZE):
            log.debug("VMMDev: request header at %#x outside RAM", gpa)
            return
        size, version, rtype = struct.unpack("<III", mem.read(gpa, 12))
        if size < T.HEADER_SIZE or size > T.VMMDEV_MAX_VMMDEVREQ_SIZE or not mem.contains(gpa, size):
            rc = T.VERR_INVALID_PARAMETER
        elif version != T.VMMDEV_REQUEST_HEADER_VERSION:
            rc = T.VERR_VERSION_MISMATCH
        elif not self.additions_ok and rtype not in _BEFORE_GUEST_INFO:
            rc = T.VERR_NOT_SUPPORTED
        else:
            handler = self._handlers.get(rtype)
            if handler is None:
                rc = T.VERR_NOT_IMPLEMENTED
            else:
                req = mem.read(gpa, size)
                try:
                    rc, out = handler(gpa, req)
                except (struct.error, GuestMemoryError) as e:
                    log.debug("VMMDev: request %d at %#x: %s", rtype, gpa, e)
                    rc, out = T.VERR_INVALID_PARAMETER, None
                if out:
                    mem.write(gpa + T.HEADER_SIZE, out)
        mem.write(gpa + 12, struct.pack("<i", rc))

    # --- plain requests: each returns (rc, body bytes to write back after the header) ----------------
    @staticmethod
    def _sized(req: bytes, size: int) -> bool:
        return len(req) == size

    def _get_mouse_status(self, gpa, req):
        if not self._sized(req, 36):
            return T.VERR_INVALID_PARAMETER, None
        return T.VINF_SUCCESS, struct.pack("<Iii", self.mouse_features | T.MOUSE_HOST_CANNOT_HWPOINTER, 0, 0)

    def _set_mouse_status(self, gpa, req):
        if not self._sized(req, 36):
            return T.VERR_INVALID_PARAMETER, None
        features = struct.unpack_from("<I", req, 24)[0]
        self.mouse_features = features & T.MOUSE_GUEST_MASK
        return T.VINF_SUCCESS, None

    def _get_host_version(self, gpa, req):
        if not self._sized(req, 40):
            return T.VERR_INVALID_PARAMETER, None
        major, minor, build = T.HOST_VERSION
        return T.VINF_SUCCESS, struct.pack("<HHIII", major, minor, build, T.HOST_REVISION,
                                           T.HVF_HGCM_PHYS_PAGE_LIST)

    def _get_host_time(self, gpa, req):
        if not self._sized(req, 32):
            return T.VERR_INVALID_PARAMETER, None
        return T.VINF_SUCCESS, struct.pack("<Q", int(time.time() * 1000))

    def _get_hypervisor_info(self, gpa, req):
        if not self._sized(req, 32):
            return T.VERR_INVALID_PARAMETER, None
        return T.VINF_SUCCESS, struct.pack("<II", 0, 0)      # no hypervisor area to reserve

    def _set_hypervisor_info(self, gpa, req):
        if not self._sized(req, 32):
            return T.VERR_INVALID_PARAMETER, None
        return T.VINF_SUCCESS, None

    def _acknowledge_events(self, gpa, req):
        if not self._sized(req, 28):
            return T.VERR_INVALID_PARAMETER, None
        events = self.host_events & self.filter_mask
        self.host_events &= ~events
        self._update_irq()
        return T.VINF_SUCCESS, struct.pack("<I", events)

    def _ctl_filter_mask(self, gpa, req):
        if not self._sized(req, 32):
            return T.VERR_INVALID_PARAMETER, None
        or_mask, not_mask = struct.unpack_from("<II", req, 24)
        self.filter_mask = ((self.filter_mask | or_mask) & ~not_mask) & T.EVENT_VALID_MASK
        self._update_irq()
        return T.VINF_SUCCESS, None

    def _report_guest_info(self, gpa, req):
        if not self._sized(req, 32):
            return T.VERR_INVALID_PARAMETER, None
        iface, os_type = struct.unpack_from("<II", req, 24)
        if iface >> 16 != T.VMMDEV_VERSION_MAJOR:
            return T.VERR_VERSION_MISMATCH, None
        self.guest_info.update(interface_version=iface, os_type=os_type)
        self.additions_ok = True
        self._report()
        return T.VINF_SUCCESS, None

    def _report_guest_info2(self, gpa, req):
        if not self._sized(req, 168):
            return T.VERR_INVALID_PARAMETER, None
        major, minor, build, revision, features = struct.unpack_from("<HHIII", req, 24)
        name = req[40:168].split(b"\0", 1)[0].decode("ascii", "replace")
        self.guest_info.update(version=f"{major}.{minor}.{build}", revision=revision, features=features,
                               name=name)
        self._report()
        return T.VINF_SUCCESS, None

    def _report_guest_status(self, gpa, req):
        if not self._sized(req, 36):
            return T.VERR_INVALID_PARAMETER, None
        facility, status, _flags = struct.unpack_from("<III", req, 24)
        self.guest_info.setdefault("facilities", {})[str(facility)] = status
        self._report()
        return T.VINF_SUCCESS, None

    def _report_guest_caps(self, gpa, req):
        if not self._sized(req, 28):
            return T.VERR_INVALID_PARAMETER, None
        self.guest_caps = struct.unpack_from("<I", req, 24)[0]
        return T.VINF_SUCCESS, None

    def _set_guest_caps(self, gpa, req):
        if not self._sized(req, 32):
            return T.VERR_INVALID_PARAMETER, None
        or_mask, not_mask = struct.unpack_from("<II", req, 24)
        self.guest_caps = (self.guest_caps | or_mask) & ~not_mask
        return T.VINF_SUCCESS, None

    def _guest_heartbeat(self, gpa, req):
        if not self._sized(req, 24):
            return T.VERR_INVALID_PARAMETER, None
        if not self.heartbeat:
            return T.VERR_INVALID_STATE, None
        self.last_heartbeat = time.monotonic()
        return T.VINF_SUCCESS, None

    def _heartbeat_configure(self, gpa, req):
        if not self._sized(req, 36):
            return T.VERR_INVALID_PARAMETER, None
        self.heartbeat = bool(req[32])
        return T.VINF_SUCCESS, struct.pack("<QB3x", T.HEARTBEAT_DEFAULT_INTERVAL_NS, req[32])

    def _get_balloon(self, gpa, req):
        if not self._sized(req, 36):
            return T.VERR_INVALID_PARAMETER, None
        return T.VINF_SUCCESS, struct.pack("<III", 0, self.memory.size >> 20, 0)

    def _change_balloon(self, gpa, req):
        return T.VERR_NOT_SUPPORTED, None       # no balloon was ever asked for

    def _report(self) -> None:
        if self.on_guest_info is not None:
            self.on_guest_info(dict(self.guest_info))

    # --- HGCM ------------------------------------------------------------------------------------
    def _hgcm_start(self, gpa: int, kind: int) -> _HgcmCommand | int:
        if self.hgcm is None:
            return T.VERR_NOT_SUPPORTED
        with self._lock:
            if gpa in self._pending:
                return T.VERR_INVALID_PARAMETER
            if len(self._pending) >= MAX_PENDING_HGCM:
                return T.VERR_NO_MEMORY
            cmd = self._pending[gpa] = _HgcmCommand(gpa, kind)
        self.memory.write(gpa + 24, struct.pack("<Ii", 0, 0))     # flags, result
        return cmd

    def _hgcm_connect(self, gpa, req):
        if len(req) < T.HGCM_CONNECT_SIZE:
            return T.VERR_INVALID_PARAMETER, None
        loc_type = struct.unpack_from("<I", req, 32)[0]
        raw = req[36:36 + T.HGCM_SERVICE_NAME_MAX]
        if loc_type != T.HGCM_LOC_LOCALHOST_EXISTING or b"\0" not in raw:
            return T.VERR_INVALID_PARAMETER, None
        name = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        cmd = self._hgcm_start(gpa, T.REQ_HGCM_CONNECT)
        if isinstance(cmd, int):
            return cmd, None

        def done(rc: int, client_id: int) -> None:
            self._complete(cmd, rc, lambda: self.memory.write(gpa + 164, struct.pack("<I", client_id))
                           if rc >= 0 else None)
        self.hgcm.connect(name, done)
        return T.VINF_HGCM_ASYNC_EXECUTE, None

    def _hgcm_disconnect(self, gpa, req):
        if len(req) < T.HGCM_DISCONNECT_SIZE:
            return T.VERR_INVALID_PARAMETER, None
        client_id = struct.unpack_from("<I", req, 32)[0]
        cmd = self._hgcm_start(gpa, T.REQ_HGCM_DISCONNECT)
        if isinstance(cmd, int):
            return cmd, None
        self.hgcm.disconnect(client_id, lambda rc: self._complete(cmd, rc))
        return T.VINF_HGCM_ASYNC_EXECUTE, None

    def _hgcm_call(self, gpa, req):
        if len(req) < T.HGCM_CALL_SIZE:
            return T.VERR_INVALID_PARAMETER, None
        is64 = struct.unpack_from("<I", req, 8)[0] == T.REQ_HGCM_CALL64
        client_id, function, count = struct.unpack_from("<III", req, 32)
        try:
            parms = hgcm_params.decode(self.memory, req, count, is64)
        except hgcm_params.HgcmParmError as e:
            log.debug("VMMDev: HGCM call at %#x: %s", gpa, e)
            return e.rc, None
        cmd = self._hgcm_start(gpa, T.REQ_HGCM_CALL64 if is64 else T.REQ_HGCM_CALL32)
        if isinstance(cmd, int):
            return cmd, None
        cmd.is64, cmd.parms = is64, parms
        self.hgcm.call(client_id, function, parms,
                       lambda rc: self._complete(cmd, rc, lambda: hgcm_params.write_back(self.memory, gpa,
                                                                                         parms, is64)))
        return T.VINF_HGCM_ASYNC_EXECUTE, None

    def _cancel(self, target: int) -> int:
        with self._lock:
            cmd = self._pending.pop(target, None)
            if cmd is None:
                return T.VERR_NOT_FOUND
            cmd.cancelled = True
        if self.memory.contains(target, T.HGCM_HEADER_SIZE):
            self.memory.write(target + 24, struct.pack("<Ii", T.HGCM_REQ_CANCELLED | T.HGCM_REQ_DONE,
                                                       T.VERR_CANCELLED))
        return T.VINF_SUCCESS

    def _hgcm_cancel(self, gpa, req):
        """The legacy form: the request to cancel is this very request."""
        if len(req) < T.HGCM_HEADER_SIZE:
            return T.VERR_INVALID_PARAMETER, None
        return self._cancel(gpa), None

    def _hgcm_cancel2(self, gpa, req):
        if not self._sized(req, 28):
            return T.VERR_INVALID_PARAMETER, None
        target = struct.unpack_from("<I", req, 24)[0]
        if target == 0 or target == gpa:
            return T.VERR_INVALID_PARAMETER, None
        return self._cancel(target), None

    def _complete(self, cmd: _HgcmCommand, rc: int, write_outputs: Callable[[], None] | None = None) -> None:
        """HGCM worker: hand the completion to the device thread."""
        def finish():
            with self._lock:
                if cmd.cancelled or self._pending.get(cmd.gpa) is not cmd:
                    return
                del self._pending[cmd.gpa]
            try:
                if write_outputs is not None and rc >= 0:
                    write_outputs()
                self.memory.write(cmd.gpa + 28, struct.pack("<i", rc))
                flags = self.memory.read_u32(cmd.gpa + 24)
                self.memory.write(cmd.gpa + 24, struct.pack("<I", flags | T.HGCM_REQ_DONE))
            except GuestMemoryError as e:        # the guest moved RAM under a pending call
                log.debug("VMMDev: HGCM completion at %#x: %s", cmd.gpa, e)
                return
            self.raise_events(T.EVENT_HGCM)
        if self._timer is None:
            finish()
            return
        self._completions.append(finish)
        self._timer.arm(0)

    def run_completions(self) -> None:
        """Device thread: finish the HGCM requests the worker completed."""
        while self._completions:
            self._completions.popleft()()

    @property
    def pending_hgcm(self) -> int:
        return len(self._pending)

    # --- saved state / reset -----------------------------------------------------------------------
    def get_state(self) -> VmmDevState:
        return VmmDevState(super().get_state(), self.host_events, self.filter_mask, self.guest_caps,
                           self.mouse_features, self.additions_ok, self.heartbeat, dict(self.guest_info))

    def set_state(self, state: VmmDevState) -> None:
        with self._lock:
            for cmd in self._pending.values():
                cmd.cancelled = True
            self._pending.clear()
        if self.hgcm is not None:
            self.hgcm.disconnect_all()
        self.host_events, self.filter_mask = state.host_events, state.filter_mask
        self.guest_caps, self.mouse_features = state.guest_caps, state.mouse_features
        self.additions_ok, self.heartbeat = state.additions_ok, state.heartbeat
        self.guest_info = dict(state.guest_info)
        super().set_state(state.pci)
