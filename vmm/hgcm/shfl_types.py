"""The SharedFolders protocol (VirtualBox's shflsvc.h, Linux's shfl_hostintf.h): function
numbers, SHFL_CF_* create flags, result codes and the packed structures the guest exchanges
with the service (SHFLSTRING, SHFLFSOBJINFO, SHFLCREATEPARMS, SHFLDIRINFO, SHFLVOLINFO)."""

from __future__ import annotations

import os
import stat
import struct

SERVICE_NAME = "VBoxSharedFolders"

FN_QUERY_MAPPINGS = 1
FN_QUERY_MAP_NAME = 2
FN_CREATE = 3
FN_CLOSE = 4
FN_READ = 5
FN_WRITE = 6
FN_LOCK = 7
FN_LIST = 8
FN_INFORMATION = 9
FN_REMOVE = 11
FN_MAP_FOLDER_OLD = 12
FN_UNMAP_FOLDER = 13
FN_RENAME = 14
FN_FLUSH = 15
FN_SET_UTF8 = 16
FN_MAP_FOLDER = 17
FN_READLINK = 18
FN_SYMLINK = 19
FN_SET_SYMLINKS = 20

ROOT_NIL = 0xFFFF_FFFF
HANDLE_NIL = 0xFFFF_FFFF_FFFF_FFFF
MAX_MAPPINGS = 64
MAX_HANDLES = 4096
MAX_RW_COUNT = 16 << 20

# SHFL_CF_*
CF_LOOKUP = 0x1
CF_OPEN_TARGET_DIRECTORY = 0x2
CF_DIRECTORY = 0x4
CF_ACT_MASK_IF_EXISTS = 0xF0
CF_ACT_OPEN_IF_EXISTS = 0x00
CF_ACT_FAIL_IF_EXISTS = 0x10
CF_ACT_REPLACE_IF_EXISTS = 0x20
CF_ACT_OVERWRITE_IF_EXISTS = 0x30
CF_ACT_MASK_IF_NEW = 0xF00
CF_ACT_CREATE_IF_NEW = 0x000
CF_ACT_FAIL_IF_NEW = 0x100
CF_ACCESS_MASK_RW = 0x3000
CF_ACCESS_READ = 0x1000
CF_ACCESS_WRITE = 0x2000
CF_ACCESS_READWRITE = 0x3000
CF_ACCESS_MASK_ATTR = 0x30000
CF_ACCESS_ATTR_WRITE = 0x20000
CF_ACCESS_APPEND = 0x40000

# SHFLCREATERESULT
NO_RESULT = 0
PATH_NOT_FOUND = 1
FILE_NOT_FOUND = 2
FILE_EXISTS = 3
FILE_CREATED = 4
FILE_REPLACED = 5

INFO_SET = 0x1
INFO_NAME = 0x2
INFO_SIZE = 0x4
INFO_FILE = 0x8
INFO_VOLUME = 0x10

REMOVE_FILE = 0x1
REMOVE_DIR = 0x2
REMOVE_SYMLINK = 0x4
RENAME_FILE = 0x1
RENAME_DIR = 0x2
RENAME_REPLACE_IF_EXISTS = 0x4
LIST_RETURN_ONE = 1
MF_AUTOMOUNT = 0x2
MS_NEW = 1

FSOBJATTRADD_UNIX = 2
STRING_HEADER = 4
FSOBJINFO_SIZE = 92
CREATEPARMS_SIZE = 8 + 4 + 4 + FSOBJINFO_SIZE
DIRINFO_FIXED = FSOBJINFO_SIZE + 2 + 28 + STRING_HEADER     # + name buffer
VOLINFO_SIZE = 40
# RTFS_DOS_* bits VirtualBox puts above the unix mode
_DOS_DIRECTORY = 0x0010 << 16
_DOS_NT_NORMAL = 0x0080 << 16


def pack_fsobjinfo(st: os.stat_result) -> bytes:
    mode = st.st_mode & 0xFFFF
    mode |= _DOS_DIRECTORY if stat.S_ISDIR(st.st_mode) else _DOS_NT_NORMAL
    birth = getattr(st, "st_birthtime_ns", st.st_ctime_ns)
    return struct.pack("<qqqqqqII" "IIIIQIII", st.st_size, st.st_blocks * 512, st.st_atime_ns, st.st_mtime_ns,
                       st.st_ctime_ns, birth, mode, FSOBJATTRADD_UNIX,
                       st.st_uid, st.st_gid, st.st_nlink, st.st_dev & 0xFFFF_FFFF, st.st_ino, 0, 0,
                       st.st_rdev & 0xFFFF_FFFF)


def unpack_times_mode(info: bytes) -> tuple[int, int, int, int]:
    """(size, access ns, modification ns, mode) from a guest SHFLFSOBJINFO."""
    size, _alloc, atime, mtime = struct.unpack_from("<qqqq", info, 0)
    mode = struct.unpack_from("<I", info, 48)[0]
    return size, atime, mtime, mode


def pack_string(text: str, utf8: bool) -> bytes:
    raw = text.encode("utf-8") if utf8 else text.encode("utf-16-le")
    term = b"\0" if utf8 else b"\0\0"
    return struct.pack("<HH", len(raw) + len(term), len(raw)) + raw + term


def pack_dirinfo(name: bytes, st: os.stat_result) -> bytes:
    return (pack_fsobjinfo(st) + bytes(2 + 28) + struct.pack("<HH", len(name) + 1, len(name)) + name + b"\0")


def pack_volinfo(total: int, avail: int, block: int, serial: int, read_only: bool) -> bytes:
    return struct.pack("<qqIII" "I6B2x", total, avail, block, 512, serial, 255, 0, 1, int(read_only), 1, 0, 0)
