"""VMMDev request codes, layouts and status codes, as VirtualBox's VMMDev.h / VBoxGuestCoreTypes.h
and the Linux driver's vbox_vmmdev_types.h / vbox_err.h define them.

Kept apart from the device so the HGCM parameter code and the tests share one set of numbers.
"""

from __future__ import annotations

# --- PCI identity and register windows (VMMDev.h) -----------------------------------------------
VMMDEV_VENDOR_ID = 0x80EE
VMMDEV_DEVICE_ID = 0xCAFE
VMMDEV_CLASS = 0x088000            # system peripheral, other
VMMDEV_PORT_RANGE = 0x20           # BAR0 I/O window
VMMDEV_PORT_OFF_REQUEST = 0        # the guest writes a request's physical address here
VMMDEV_RAM_SIZE = 4 << 20          # BAR1: VMMDevMemory (VirtualBox maps 4 MiB)
VMMDEV_MEMORY_VERSION = 1
VMMDEV_MEMORY_SIZE = 0x1000        # what VMMDevMemory.u32Size reports (the page we back)

# --- the generic request header ----------------------------------------------------------------
HEADER_SIZE = 24                   # size, version, requestType, rc, reserved1, fRequestor
VMMDEV_REQUEST_HEADER_VERSION = 0x10001
VMMDEV_MAX_VMMDEVREQ_SIZE = 1 << 20
VMMDEV_VERSION = 0x00010004
VMMDEV_VERSION_MAJOR = VMMDEV_VERSION >> 16

# --- request types (VMMDevRequestType) ---------------------------------------------------------
REQ_GET_MOUSE_STATUS = 1
REQ_SET_MOUSE_STATUS = 2
REQ_SET_POINTER_SHAPE = 3
REQ_GET_HOST_VERSION = 4
REQ_IDLE = 5
REQ_GET_HOST_TIME = 10
REQ_GET_HYPERVISOR_INFO = 20
REQ_SET_HYPERVISOR_INFO = 21
REQ_SET_POWER_STATUS = 30
REQ_ACKNOWLEDGE_EVENTS = 41
REQ_CTL_GUEST_FILTER_MASK = 42
REQ_REPORT_GUEST_INFO = 50
REQ_REPORT_GUEST_CAPABILITIES = 55
REQ_SET_GUEST_CAPABILITIES = 56
REQ_REPORT_GUEST_INFO2 = 58
REQ_REPORT_GUEST_STATUS = 59
REQ_HGCM_CONNECT = 60
REQ_HGCM_DISCONNECT = 61
REQ_HGCM_CALL32 = 62
REQ_HGCM_CALL64 = 63
REQ_HGCM_CANCEL = 64
REQ_HGCM_CANCEL2 = 65
REQ_GET_MEM_BALLOON_CHANGE_REQUEST = 111
REQ_CHANGE_MEM_BALLOON = 113
REQ_WRITE_CORE_DUMP = 218
REQ_GUEST_HEARTBEAT = 219
REQ_HEARTBEAT_CONFIGURE = 220

# --- events (VMMDEV_EVENT_*) ---------------------------------------------------------------------
EVENT_MOUSE_CAPABILITIES_CHANGED = 1 << 0
EVENT_HGCM = 1 << 1
EVENT_DISPLAY_CHANGE_REQUEST = 1 << 2
EVENT_VALID_MASK = 0x7FF

# --- mouse status bits ---------------------------------------------------------------------------
MOUSE_GUEST_CAN_ABSOLUTE = 1 << 0
MOUSE_HOST_WANTS_ABSOLUTE = 1 << 1
MOUSE_GUEST_NEEDS_HOST_CURSOR = 1 << 2
MOUSE_HOST_CANNOT_HWPOINTER = 1 << 3
MOUSE_NEW_PROTOCOL = 1 << 4
MOUSE_GUEST_MASK = MOUSE_GUEST_CAN_ABSOLUTE | MOUSE_GUEST_NEEDS_HOST_CURSOR | MOUSE_NEW_PROTOCOL

# --- host features (VMMDEV_HVF_*) ----------------------------------------------------------------
HVF_HGCM_PHYS_PAGE_LIST = 1 << 0
HVF_HGCM_EMBEDDED_BUFFERS = 1 << 1
HVF_HGCM_CONTIGUOUS_PAGE_LIST = 1 << 2

# --- guest facilities (VBoxGuestFacilityType / Status) -------------------------------------------
FACILITY_VBOXGUEST_DRIVER = 20
FACILITY_STATUS_ACTIVE = 50

# --- HGCM (VMMDev.h) -----------------------------------------------------------------------------
HGCM_REQ_DONE = 1 << 0
HGCM_REQ_CANCELLED = 1 << 1
HGCM_HEADER_SIZE = HEADER_SIZE + 8          # + fu32Flags, result
HGCM_CALL_SIZE = HGCM_HEADER_SIZE + 12      # + client id, function, parameter count
HGCM_CONNECT_SIZE = HGCM_HEADER_SIZE + 132 + 4
HGCM_DISCONNECT_SIZE = HGCM_HEADER_SIZE + 4
HGCM_MAX_PARMS = 32
HGCM_LOC_LOCALHOST_EXISTING = 2
HGCM_SERVICE_NAME_MAX = 128

PARM_INVALID = 0
PARM_32BIT = 1
PARM_64BIT = 2
PARM_PHYSADDR = 3
PARM_LINADDR = 4
PARM_LINADDR_IN = 5
PARM_LINADDR_OUT = 6
PARM_LINADDR_KERNEL = 7
PARM_LINADDR_KERNEL_IN = 8
PARM_LINADDR_KERNEL_OUT = 9
PARM_PAGELIST = 10
PARM_EMBEDDED = 11
PARM_CONTIGUOUS_PAGELIST = 12
LINADDR_TYPES = (PARM_LINADDR, PARM_LINADDR_IN, PARM_LINADDR_OUT, PARM_LINADDR_KERNEL,
                 PARM_LINADDR_KERNEL_IN, PARM_LINADDR_KERNEL_OUT)

DIR_TO_HOST = 1
DIR_FROM_HOST = 2
DIR_BOTH = 3

# --- status codes (VBox/err.h, iprt/err.h) ------------------------------------------------------
VINF_SUCCESS = 0
VERR_GENERAL_FAILURE = -1
VERR_INVALID_PARAMETER = -2
VERR_INVALID_HANDLE = -4
VERR_INVALID_POINTER = -6
VERR_NO_MEMORY = -8
VERR_PERMISSION_DENIED = -10
VERR_VERSION_MISMATCH = -11
VERR_NOT_IMPLEMENTED = -12
VERR_INVALID_FLAGS = -13
VERR_NOT_SUPPORTED = -37
VERR_ACCESS_DENIED = -38
VERR_INTERRUPTED = -39
VERR_BUFFER_OVERFLOW = -41
VERR_TOO_MUCH_DATA = -42
VERR_CANCELLED = -70
VERR_NOT_FOUND = -78
VERR_INVALID_STATE = -79
VERR_HGCM_SERVICE_NOT_FOUND = -2900
VERR_HGCM_INVALID_CMD_ADDRESS = -2902
VINF_HGCM_ASYNC_EXECUTE = 2903
VERR_HGCM_INTERNAL = -2904
VERR_HGCM_INVALID_CLIENT_ID = -2905

# what GetHostVersion reports (the VirtualBox release the API claims to be)
HOST_VERSION = (7, 1, 6)
HOST_REVISION = 167084
HEARTBEAT_DEFAULT_INTERVAL_NS = 2_000_000_000
