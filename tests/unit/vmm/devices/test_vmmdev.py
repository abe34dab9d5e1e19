"""VMMDev: the probe requests of Linux's vboxguest, events and the interrupt, HGCM calls with page
lists, and hostile requests (bad sizes, versions, addresses, page lists) answered with VERR_*."""

import struct
import threading

import pytest

from vmm.bus import Bus
from vmm.devices import vmmdev_types as T
from vmm.devices.base import IrqLine
from vmm.devices.pci import PciHostBridge
from vmm.devices.vmmdev import VmmDev
from vmm.hgcm.core import Hgcm
from vmm.memory import GuestMemory
from vmm.tm import FakeClock

REQ = 0x10000          # where the test puts requests
RAM = 16 << 20


def header(size, rtype, version=T.VMMDEV_REQUEST_HEADER_VERSION):
    return struct.pack("<IIIiII", size, version, rtype, 0x7777, 0, 0)


class Echo:
    """A test service: function 1 copies parameter 0 (in) to parameter 1 (out) reversed and
    returns the length in parameter 2; function 2 blocks until released."""

    def __init__(self):
        self.connected, self.gate = [], threading.Event()

    def connect(self, cid):
        self.connected.append(cid)
        return T.VINF_SUCCESS

    def disconnect(self, cid):
        self.connected.remove(cid)

    def call(self, cid, function, parms):
        if function == 1:
            data = bytes(parms[0].data)[::-1]
            parms[1].data[:len(data)] = data
            parms[1].size = len(data)
            parms[2].value = len(data)
            return T.VINF_SUCCESS
        if function == 2:
            self.gate.wait(5)
            return T.VINF_SUCCESS
        return T.VERR_NOT_IMPLEMENTED


@pytest.fixture
def dev():
    mem = GuestMemory(RAM)
    irq = IrqLine()
    hgcm = Hgcm(threaded=False)
    hgcm.register("Echo", Echo())
    d = VmmDev(mem, hgcm, irq=irq)
    d.test_irq = irq
    yield d
    hgcm.close()
    mem.close()


def run(d, body, rtype, gpa=REQ, size=None, version=T.VMMDEV_REQUEST_HEADER_VERSION):
    size = 24 + len(body) if size is None else size
    d.memory.write(gpa, header(size, rtype, version) + body)
    d.request(gpa)
    return struct.unpack("<i", d.memory.read(gpa + 12, 4))[0], d.memory.read(gpa + 24, len(body))


def report_info(d):
    rc, _ = run(d, struct.pack("<HHIII", 6, 0, 0, 0, 0) + b"6.1.0".ljust(128, b"\0"),
                T.REQ_REPORT_GUEST_INFO2)
    assert rc == T.VINF_SUCCESS
    rc, _ = run(d, struct.pack("<II", T.VMMDEV_VERSION, 0x53100), T.REQ_REPORT_GUEST_INFO)
    assert rc == T.VINF_SUCCESS


def test_pci_identity_and_bars():
    io, mmio = Bus("io"), Bus("mmio")
    bridge = PciHostBridge(io, mmio)
    d = VmmDev(GuestMemory(RAM))
    bridge.add_function(d, 4)
    bridge.assign_resources()
    assert d.config_read(0, 4) == 0xCAFE80EE
    assert d.config_read(0x3D, 1) == 1
    port, mem = d.bar_address(0), d.bar_address(1)
    assert mmio.read(mem + 4, 4) == T.VMMDEV_MEMORY_VERSION
    assert mmio.read(mem, 4) >= 32
    d.memory.write(REQ, header(40, T.REQ_GET_HOST_VERSION) + bytes(16))
    io.write(port, 4, REQ)
    assert d.memory.read_u32(REQ + 12) == 0
    assert struct.unpack("<HHIII", d.memory.read(REQ + 24, 16)) == (7, 1, 6, T.HOST_REVISION,
                                                                    T.HVF_HGCM_PHYS_PAGE_LIST)


def test_guest_info_first_then_the_rest(dev):
    rc, _ = run(dev, bytes(8), T.REQ_CTL_GUEST_FILTER_MASK)
    assert rc == T.VERR_NOT_SUPPORTED                  # before ReportGuestInfo
    seen = []
    dev.on_guest_info = seen.append
    report_info(dev)
    assert seen[-1]["version"] == "6.0.0" and seen[-1]["os_type"] == 0x53100
    rc, _ = run(dev, struct.pack("<III", T.FACILITY_VBOXGUEST_DRIVER, T.FACILITY_STATUS_ACTIVE, 0),
                T.REQ_REPORT_GUEST_STATUS)
    assert rc == 0 and dev.guest_info["facilities"] == {"20": 50}
    rc, out = run(dev, struct.pack("<QB3x", 0, 1), T.REQ_HEARTBEAT_CONFIGURE)
    assert rc == 0 and struct.unpack_from("<Q", out)[0] == T.HEARTBEAT_DEFAULT_INTERVAL_NS
    assert run(dev, b"", T.REQ_GUEST_HEARTBEAT)[0] == 0
    rc, out = run(dev, bytes(8), T.REQ_GET_HOST_TIME)
    assert rc == 0 and struct.unpack("<Q", out)[0] > 1_600_000_000_000
    assert run(dev, struct.pack("<II", 5, 0), T.REQ_SET_GUEST_CAPABILITIES)[0] == 0 and dev.guest_caps == 5
    assert run(dev, struct.pack("<III", 1, 0, 0), T.REQ_SET_MOUSE_STATUS)[0] == 0
    rc, out = run(dev, bytes(12), T.REQ_GET_MOUSE_STATUS)
    assert rc == 0 and struct.unpack_from("<I", out)[0] & T.MOUSE_GUEST_CAN_ABSOLUTE
    assert run(dev, bytes(8 + 8 * 256), T.REQ_CHANGE_MEM_BALLOON)[0] == T.VERR_NOT_SUPPORTED
    assert run(dev, bytes(4), 9999)[0] == T.VERR_NOT_IMPLEMENTED


def test_events_interrupt_and_acknowledge(dev):
    report_info(dev)
    mmio = dev.bars[1].handler
    dev.raise_events(T.EVENT_HGCM)
    assert not dev.test_irq.level and mmio.read(8, 1) == 0     # filtered out
    assert run(dev, struct.pack("<II", T.EVENT_HGCM, 0), T.REQ_CTL_GUEST_FILTER_MASK)[0] == 0
    assert dev.test_irq.level and mmio.read(8, 1) == 1
    rc, out = run(dev, bytes(4), T.REQ_ACKNOWLEDGE_EVENTS)
    assert rc == 0 and struct.unpack("<I", out)[0] == T.EVENT_HGCM
    assert not dev.test_irq.level and mmio.read(8, 1) == 0


@pytest.mark.parametrize("size,version,rc", [
    (8, T.VMMDEV_REQUEST_HEADER_VERSION, T.VERR_INVALID_PARAMETER),
    (T.VMMDEV_MAX_VMMDEVREQ_SIZE + 1, T.VMMDEV_REQUEST_HEADER_VERSION, T.VERR_INVALID_PARAMETER),
    (40, 0x10000, T.VERR_VERSION_MISMATCH),
    (39, T.VMMDEV_REQUEST_HEADER_VERSION, T.VERR_INVALID_PARAMETER),
])
def test_bad_headers(dev, size, version, rc):
    assert run(dev, bytes(16), T.REQ_GET_HOST_VERSION, size=size, version=version)[0] == rc


def test_requests_at_the_edge_of_ram(dev):
    # a header at the last bytes of RAM whose body runs past it
    gpa = RAM - 24
    dev.memory.write(gpa, header(40, T.REQ_GET_HOST_VERSION))
    dev.request(gpa)
    assert struct.unpack("<i", dev.memory.read(gpa + 12, 4))[0] == T.VERR_INVALID_PARAMETER
    for gpa in (RAM - 8, RAM, 0xFFFF_FFFF, 0xFEE0_0000):
        dev.request(gpa)                     # nothing to answer into: ignored, no exception


def connect(d, name=b"Echo", loc=T.HGCM_LOC_LOCALHOST_EXISTING):
    body = struct.pack("<Ii", 0, 0) + struct.pack("<I", loc) + name.ljust(128, b"\0") + bytes(4)
    rc, out = run(d, body, T.REQ_HGCM_CONNECT)
    flags, result = struct.unpack_from("<Ii", d.memory.read(REQ + 24, 8))
    return rc, flags, result, struct.unpack_from("<I", out, 8 + 132)[0]


def test_hgcm_connect_unknown_and_disconnect(dev):
    report_info(dev)
    run(dev, struct.pack("<II", T.EVENT_HGCM, 0), T.REQ_CTL_GUEST_FILTER_MASK)
    rc, flags, result, cid = connect(dev)
    assert (rc, flags, result) == (T.VINF_HGCM_ASYNC_EXECUTE, T.HGCM_REQ_DONE, 0) and cid >= 1
    assert dev.test_irq.level
    rc, flags, result, _ = connect(dev, b"NoSuchService")
    assert flags == T.HGCM_REQ_DONE and result == T.VERR_HGCM_SERVICE_NOT_FOUND
    assert connect(dev, b"x" * 128)[0] == T.VERR_INVALID_PARAMETER           # no terminator
    assert connect(dev, loc=1)[0] == T.VERR_INVALID_PARAMETER
    rc, _ = run(dev, struct.pack("<IiI", 0, 0, cid), T.REQ_HGCM_DISCONNECT)
    assert rc == T.VINF_HGCM_ASYNC_EXECUTE and dev.memory.read_u32(REQ + 28) == 0
    run(dev, struct.pack("<IiI", 0, 0, cid), T.REQ_HGCM_DISCONNECT)
    assert struct.unpack("<i", dev.memory.read(REQ + 28, 4))[0] == T.VERR_HGCM_INVALID_CLIENT_ID


def call_body(cid, function, parms, extra=b"", is64=True):
    """parms: list of raw parameter entries (already packed)."""
    return struct.pack("<IiIII", 0, 0, cid, function, len(parms)) + b"".join(parms) + extra


def pagelist_parm(size, offset, is64=True):
    return struct.pack("<IIIxxxx" if is64 else "<III", T.PARM_PAGELIST, size, offset)


def test_hgcm_call_with_page_lists(dev):
    report_info(dev)
    _, _, _, cid = connect(dev)
    # input buffer: 5000 bytes starting 100 bytes into page 0x200000, spanning two pages
    src = bytes(range(256)) * 20
    src = src[:5000]
    dev.memory.write(0x200000 + 100, src[:3996])
    dev.memory.write(0x300000, src[3996:])
    nparms = 3
    base = T.HGCM_CALL_SIZE + 16 * nparms
    pl_in = struct.pack("<IHH", T.DIR_TO_HOST, 100, 2) + struct.pack("<QQ", 0x200000, 0x300000)
    pl_out = struct.pack("<IHH", T.DIR_FROM_HOST, 0, 2) + struct.pack("<QQ", 0x400000, 0x500000)
    parms = [pagelist_parm(5000, base), pagelist_parm(5000, base + len(pl_in)),
             struct.pack("<IIQ", T.PARM_32BIT, 0, 0)]
    rc, _ = run(dev, call_body(cid, 1, parms, pl_in + pl_out), T.REQ_HGCM_CALL64)
    assert rc == T.VINF_HGCM_ASYNC_EXECUTE
    assert struct.unpack_from("<Ii", dev.memory.read(REQ + 24, 8)) == (T.HGCM_REQ_DONE, 0)
    out = dev.memory.read(0x400000, 4096) + dev.memory.read(0x500000, 904)
    assert out == src[::-1]
    assert dev.memory.read_u32(REQ + base - 16 + 4) == 5000          # parameter 2 (value32)


def test_hgcm_call32_values(dev):
    report_info(dev)
    _, _, _, cid = connect(dev)
    parms = [struct.pack("<III", T.PARM_LINADDR_IN, 0, 0), struct.pack("<III", T.PARM_LINADDR_OUT, 0, 0),
             struct.pack("<III", T.PARM_32BIT, 77, 0)]
    rc, _ = run(dev, call_body(cid, 1, parms), T.REQ_HGCM_CALL32)
    assert rc == T.VINF_HGCM_ASYNC_EXECUTE
    assert dev.memory.read_u32(REQ + T.HGCM_CALL_SIZE + 24 + 4) == 0


@pytest.mark.parametrize("case", ["page outside ram", "unaligned page", "page count", "list past request",
                                  "list over parms", "bad flags", "first offset", "too many parms",
                                  "parms past request", "linear buffer", "physaddr", "huge size"])
def test_hostile_hgcm_calls(dev, case):
    report_info(dev)
    _, _, _, cid = connect(dev)
    base = T.HGCM_CALL_SIZE + 16
    pages, first, count, flags, size, offset, nparms = [0x200000], 0, 1, T.DIR_BOTH, 100, base, 1
    ptype = T.PARM_PAGELIST
    if case == "page outside ram":
        pages = [RAM]
    elif case == "unaligned page":
        pages = [0x200010]
    elif case == "page count":
        count = 2
    elif case == "list past request":
        offset = base + 4
    elif case == "list over parms":
        offset = T.HGCM_CALL_SIZE
    elif case == "bad flags":
        flags = 4
    elif case == "first offset":
        first = 4096
    elif case == "too many parms":
        nparms = 33
    elif case == "huge size":
        size, count = 0xFFFF_FFFF, 1
    pl = struct.pack("<IHH", flags, first, count) + b"".join(struct.pack("<Q", p) for p in pages)
    if case == "linear buffer":
        parm = struct.pack("<IIQ", T.PARM_LINADDR_KERNEL, 100, 0xFFFF8880_0000_0000)
    elif case == "physaddr":
        parm = struct.pack("<IIQ", T.PARM_PHYSADDR, 100, 0x200000)
    else:
        parm = struct.pack("<IIIxxxx", ptype, size, offset)
    body = struct.pack("<IiIII", 0, 0, cid, 1, nparms) + parm + pl
    if case == "parms past request":
        body = struct.pack("<IiIII", 0, 0, cid, 1, 3) + parm
    rc, _ = run(dev, body, T.REQ_HGCM_CALL64)
    assert rc < 0 and rc != T.VINF_HGCM_ASYNC_EXECUTE
    assert dev.pending_hgcm == 0
    assert dev.memory.read(RAM - 16, 16) == bytes(16)


def test_threaded_completion_and_cancel():
    mem = GuestMemory(RAM)
    clock = FakeClock()
    hgcm = Hgcm(threaded=True)
    echo = Echo()
    hgcm.register("Echo", echo)
    d = VmmDev(mem, hgcm, clock=clock)
    try:
        report_info(d)
        connect(d)
        assert d.memory.read_u32(REQ + 24) == 0            # not done until the device thread runs
        for _ in range(500):
            clock.run_due()
            if d.memory.read_u32(REQ + 24) & T.HGCM_REQ_DONE:
                break
            threading.Event().wait(0.01)
        cid = d.memory.read_u32(REQ + 164)
        assert d.memory.read_u32(REQ + 24) == T.HGCM_REQ_DONE and cid >= 1
        # a blocking call, then cancelled through HGCMCancel2 from another request
        rc, _ = run(d, call_body(cid, 2, []), T.REQ_HGCM_CALL64, gpa=0x20000)
        assert rc == T.VINF_HGCM_ASYNC_EXECUTE and d.pending_hgcm == 1
        rc, _ = run(d, struct.pack("<I", 0x20000), T.REQ_HGCM_CANCEL2)
        assert rc == T.VINF_SUCCESS and d.pending_hgcm == 0
        assert d.memory.read_u32(0x20000 + 24) == T.HGCM_REQ_CANCELLED | T.HGCM_REQ_DONE
        assert run(d, struct.pack("<I", 0x20000), T.REQ_HGCM_CANCEL2)[0] == T.VERR_NOT_FOUND
        echo.gate.set()
    finally:
        hgcm.close()
        mem.close()


def test_reset_drops_clients_and_pending(dev):
    report_info(dev)
    connect(dev)
    state0 = VmmDev(GuestMemory(RAM)).get_state()
    dev.set_state(state0)
    assert not dev.additions_ok and dev.hgcm.clients == {}


def test_a_failing_service_still_completes_the_call(dev):
    class Broken(Echo):
        def call(self, cid, function, parms):
            raise RuntimeError("service bug")
    dev.hgcm.register("Broken", Broken())
    report_info(dev)
    _, _, _, cid = connect(dev, b"Broken")
    rc, _ = run(dev, call_body(cid, 1, []), T.REQ_HGCM_CALL64)
    assert rc == T.VINF_HGCM_ASYNC_EXECUTE
    assert struct.unpack_from("<Ii", dev.memory.read(REQ + 24, 8)) == (T.HGCM_REQ_DONE, T.VERR_HGCM_INTERNAL)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_requests_never_raise(dev, seed):
    import random
    rng = random.Random(seed)
    report_info(dev)
    _, _, _, cid = connect(dev)
    types = [T.REQ_HGCM_CALL32, T.REQ_HGCM_CALL64, T.REQ_HGCM_CONNECT, T.REQ_HGCM_CANCEL2,
             T.REQ_ACKNOWLEDGE_EVENTS,
             T.REQ_REPORT_GUEST_INFO2, T.REQ_HEARTBEAT_CONFIGURE, rng.randrange(300)]
    for _ in range(300):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400)))
        if rng.random() < 0.5:                     # plausible call headers with random parameters
            body = struct.pack("<IiIII", 0, 0, cid, rng.randrange(4), rng.randrange(40)) + body
        size = 24 + len(body) if rng.random() < 0.8 else rng.randrange(1 << 21)
        rc, _ = run(dev, body, rng.choice(types), gpa=rng.choice([REQ, 0x20000, RAM - 4096]), size=size)
        assert rc <= 0 or rc == T.VINF_HGCM_ASYNC_EXECUTE
    assert dev.pending_hgcm == 0
