"""The VBoxSharedFolders HGCM service: the guest's vboxsf maps a share by name, then opens,
reads, writes, lists and renames through handles (VirtualBox's HostServices/SharedFolders).

This module speaks the protocol (parameter counts and types, SHFLSTRING paths, the packed
structures); the host files are reached only through `shfl_host.HostFolder`.  The set of
shares is the machine's (permanent and transient) and may change while the guest runs:
`set_folders` keeps each remaining share at its root number, so mapped roots stay valid.
"""

from __future__ import annotations

import logging
import struct
import threading
from dataclasses import dataclass, field

from vmm.devices import vmmdev_types as T
from vmm.hgcm import shfl_types as S
from vmm.hgcm.shfl_host import (
    VERR_FILE_NOT_FOUND,
    VERR_NO_MORE_FILES,
    VERR_TOO_MANY_OPEN_FILES,
    HostFolder,
    HostHandle,
    ShflError,
)

log = logging.getLogger("vboxpy.shfl")

VINF_BUFFER_OVERFLOW = 41


@dataclass(frozen=True)
class SharedFolderSpec:
    name: str
    host_path: str
    writable: bool = True
    auto_mount: bool = False
    auto_mount_point: str = ""
    symlinks: bool = False        # VBoxInternal2/SharedFoldersEnableSymlinksCreate/<name>


@dataclass
class _Client:
    utf8: bool = False
    show_symlinks: bool = False
    roots: set = field(default_factory=set)
    handles: dict = field(default_factory=dict)       # handle -> (root, HostHandle)
    next_handle: int = 1


def _u32(p) -> int:
    if p.type != T.PARM_32BIT:
        raise ShflError(T.VERR_INVALID_PARAMETER, "32-bit parameter expected")
    return p.value


def _u64(p) -> int:
    if p.type != T.PARM_64BIT:
        raise ShflError(T.VERR_INVALID_PARAMETER, "64-bit parameter expected")
    return p.value


def _buf(p) -> bytearray:
    if p.data is None:
        raise ShflError(T.VERR_INVALID_PARAMETER, "buffer parameter expected")
    return p.data


class SharedFoldersService:
    def __init__(self, folders: list[SharedFolderSpec] | None = None):
        self._lock = threading.Lock()
        self._maps: list[tuple[SharedFolderSpec, HostFolder] | None] = []
        self._clients: dict[int, _Client] = {}
        self.set_folders(folders or [])

    # --- the machine's shares ------------------------------------------------------------------
    def set_folders(self, folders: list[SharedFolderSpec]) -> None:
        with self._lock:
            wanted = {f.name.lower(): f for f in folders}
            for i, m in enumerate(self._maps):
                if m is not None:
                    new = wanted.pop(m[0].name.lower(), None)
                    self._maps[i] = None if new is None else (
                        m if new == m[0] else (new, HostFolder(new.host_path, new.writable, new.symlinks)))
            for f in wanted.values():
                entry = (f, HostFolder(f.host_path, f.writable, f.symlinks))
                free = next((i for i, m in enumerate(self._maps) if m is None), None)
                if free is None:
                    if len(self._maps) >= S.MAX_MAPPINGS:
                        log.warning("shared folder %s: more than %d shares", f.name, S.MAX_MAPPINGS)
                        continue
                    self._maps.append(entry)
                else:
                    self._maps[free] = entry

    def folders(self) -> list[SharedFolderSpec]:
        with self._lock:
            return [m[0] for m in self._maps if m is not None]

    # --- HGCM service interface -----------------------------------------------------------------
    def connect(self, client_id: int) -> int:
        self._clients[client_id] = _Client()
        return T.VINF_SUCCESS

    def disconnect(self, client_id: int) -> None:
        client = self._clients.pop(client_id, None)
        if client is not None:
            for _root, h in client.handles.values():
                h.close()

    def call(self, client_id: int, function: int, parms: list) -> int:
        client = self._clients.get(client_id)
        if client is None:
            return T.VERR_HGCM_INVALID_CLIENT_ID
        handler = self._FUNCTIONS.get(function)
        if handler is None:
            return T.VERR_NOT_IMPLEMENTED
        count, fn = handler
        if count is not None and len(parms) != count:
            return T.VERR_INVALID_PARAMETER
        try:
            return fn(self, client, parms)
        except ShflError as e:
            return e.rc

    # --- helpers ------------------------------------------------------------------------------------
    def _string(self, client: _Client, data: bytes | bytearray, utf8: bool | None = None) -> str:
        """A SHFLSTRING from the guest, checked against the buffer it came in."""
        utf8 = client.utf8 if utf8 is None else utf8
        if len(data) < S.STRING_HEADER:
            raise ShflError(T.VERR_INVALID_PARAMETER, "short SHFLSTRING")
        size, length = struct.unpack_from("<HH", data, 0)
        if length > size or S.STRING_HEADER + size > len(data) or (not utf8 and length % 2):
            raise ShflError(T.VERR_INVALID_PARAMETER, "SHFLSTRING lengths")
        raw = bytes(data[S.STRING_HEADER:S.STRING_HEADER + length])
        try:
            return raw.decode("utf-8", "surrogateescape") if utf8 else raw.decode("utf-16-le")
        except UnicodeDecodeError:
            raise ShflError(T.VERR_INVALID_PARAMETER, "SHFLSTRING encoding")

    def _folder(self, client: _Client, root: int) -> HostFolder:
        with self._lock:
            m = self._maps[root] if root < len(self._maps) else None
        if m is None or root not in client.roots:
            raise ShflError(T.VERR_INVALID_PARAMETER, f"root {root} not mapped")
        return m[1]

    def _handle(self, client: _Client, root: int, handle: int) -> tuple[HostFolder, HostHandle]:
        folder = self._folder(client, root)
        entry = client.handles.get(handle)
        if entry is None or entry[0] != root:
            raise ShflError(T.VERR_INVALID_HANDLE)
        return folder, entry[1]

    @staticmethod
    def _put(p, data: bytes) -> None:
        buf = _buf(p)
        if len(data) > len(buf):
            raise ShflError(T.VERR_BUFFER_OVERFLOW)
        buf[:len(data)] = data
        p.size = len(data)

    # --- functions --------------------------------------------------------------------------------
    def _set_utf8(self, client, parms):
        client.utf8 = True
        return T.VINF_SUCCESS

    def _set_symlinks(self, client, parms):
        client.show_symlinks = True
        return T.VINF_SUCCESS

    def _query_mappings(self, client, parms):
        flags, capacity = _u32(parms[0]), _u32(parms[1])
        with self._lock:
            roots = [i for i, m in enumerate(self._maps)
                     if m is not None and (m[0].auto_mount or not flags & S.MF_AUTOMOUNT)]
        out = b"".join(struct.pack("<II", S.MS_NEW, r) for r in roots[:capacity])
        self._put(parms[2], out)
        parms[1].value = len(roots)
        return VINF_BUFFER_OVERFLOW if len(roots) > capacity else T.VINF_SUCCESS

    def _query_map_name(self, client, parms):
        root = _u32(parms[0])
        with self._lock:
            m = self._maps[root] if root < len(self._maps) else None
        if m is None:
            return T.VERR_INVALID_PARAMETER
        buf = _buf(parms[1])
        name = S.pack_string(m[0].name, client.utf8)
        if len(buf) < S.STRING_HEADER or len(name) - S.STRING_HEADER > struct.unpack_from("<H", buf, 0)[0]:
            return T.VERR_BUFFER_OVERFLOW
        self._put(parms[1], name)
        return T.VINF_SUCCESS

    def _map_folder(self, client, parms):
        name = self._string(client, _buf(parms[0]))
        delimiter = _u32(parms[2])
        if delimiter not in (ord("/"), ord("\\")):
            return T.VERR_INVALID_PARAMETER
        with self._lock:
            root = next((i for i, m in enumerate(self._maps)
                         if m is not None and m[0].name.lower() == name.lower()), None)
        if root is None:
            return VERR_FILE_NOT_FOUND
        client.roots.add(root)
        parms[1].value = root
        return T.VINF_SUCCESS

    def _map_folder_old(self, client, parms):
        return self._map_folder(client, parms)

    def _unmap_folder(self, client, parms):
        root = _u32(parms[0])
        if root not in client.roots:
            return T.VERR_INVALID_PARAMETER
        client.roots.discard(root)
        for hid, (r, h) in list(client.handles.items()):
            if r == root:
                h.close()
                del client.handles[hid]
        return T.VINF_SUCCESS

    def _create(self, client, parms):
        root = _u32(parms[0])
        folder = self._folder(client, root)
        path = self._string(client, _buf(parms[1]))
        cp = _buf(parms[2])
        if len(cp) < S.CREATEPARMS_SIZE:
            return T.VERR_INVALID_PARAMETER
        flags = struct.unpack_from("<I", cp, 12)[0]
        mode = struct.unpack_from("<I", cp, 16 + 48)[0]
        handle_value, info = S.HANDLE_NIL, bytes(S.FSOBJINFO_SIZE)
        if flags & S.CF_LOOKUP:
            result, st = folder.lookup(path, follow=not client.show_symlinks)
        else:
            if len(client.handles) >= S.MAX_HANDLES:
                return VERR_TOO_MANY_OPEN_FILES
            result, h, st = folder.create(path, flags, mode, follow=True)
            if h is not None:
                handle_value = client.next_handle
                client.next_handle += 1
                client.handles[handle_value] = (root, h)
        if st is not None:
            info = S.pack_fsobjinfo(st)
        cp[0:16] = struct.pack("<QII", handle_value, result, flags)
        cp[16:16 + S.FSOBJINFO_SIZE] = info
        parms[2].size = S.CREATEPARMS_SIZE
        return T.VINF_SUCCESS

    def _close(self, client, parms):
        root, handle = _u32(parms[0]), _u64(parms[1])
        _folder, h = self._handle(client, root, handle)
        del client.handles[handle]
        h.close()
        return T.VINF_SUCCESS

    def _read(self, client, parms):
        root, handle, offset, count = _u32(parms[0]), _u64(parms[1]), _u64(parms[2]), _u32(parms[3])
        folder, h = self._handle(client, root, handle)
        buf = _buf(parms[4])
        count = min(count, len(buf), S.MAX_RW_COUNT)
        data = folder.read(h, offset, count)
        buf[:len(data)] = data
        parms[4].size = len(data)
        parms[3].value = len(data)
        return T.VINF_SUCCESS

    def _write(self, client, parms):
        root, handle, offset, count = _u32(parms[0]), _u64(parms[1]), _u64(parms[2]), _u32(parms[3])
        folder, h = self._handle(client, root, handle)
        buf = _buf(parms[4])
        count = min(count, len(buf), S.MAX_RW_COUNT)
        n, end = folder.write(h, offset, memoryview(buf)[:count])
        parms[3].value = n
        parms[2].value = end
        return T.VINF_SUCCESS

    def _flush(self, client, parms):
        folder, h = self._handle(client, _u32(parms[0]), _u64(parms[1]))
        folder.flush(h)
        return T.VINF_SUCCESS

    def _list(self, client, parms):
        root, handle, flags, cb = _u32(parms[0]), _u64(parms[1]), _u32(parms[2]), _u32(parms[3])
        folder, h = self._handle(client, root, handle)
        buf = _buf(parms[5])
        room = min(cb, len(buf))
        pos = count = 0
        while True:
            entry = folder.list_next(h)
            if entry is None:
                break
            packed = S.pack_dirinfo(*entry)
            if pos + len(packed) > room:
                if count == 0:
                    return T.VERR_BUFFER_OVERFLOW
                break
            buf[pos:pos + len(packed)] = packed
            pos += len(packed)
            count += 1
            h.position += 1
            if flags & S.LIST_RETURN_ONE:
                break
        parms[3].value = pos
        parms[5].size = pos
        parms[6].value = h.position
        parms[7].value = count
        return T.VINF_SUCCESS if count else VERR_NO_MORE_FILES

    def _information(self, client, parms):
        root, handle, flags, cb = _u32(parms[0]), _u64(parms[1]), _u32(parms[2]), _u32(parms[3])
        folder, h = self._handle(client, root, handle)
        buf = _buf(parms[4])
        if flags & S.INFO_VOLUME and not flags & S.INFO_SET:
            out = folder.volume()
        elif flags & (S.INFO_FILE | S.INFO_SIZE):
            if flags & S.INFO_SET:
                if min(cb, len(buf)) < S.FSOBJINFO_SIZE:
                    return T.VERR_INVALID_PARAMETER
                size, atime, mtime, mode = S.unpack_times_mode(bytes(buf[:S.FSOBJINFO_SIZE]))
                st = (folder.set_size(h, size) if flags & S.INFO_SIZE
                      else folder.set_info(h, atime, mtime, mode))
            else:
                st = folder.stat(h)
            out = S.pack_fsobjinfo(st)
        else:
            return T.VERR_INVALID_PARAMETER
        if min(cb, len(buf)) < len(out):
            return T.VERR_INVALID_PARAMETER
        self._put(parms[4], out)
        parms[3].value = len(out)
        return T.VINF_SUCCESS

    def _remove(self, client, parms):
        folder = self._folder(client, _u32(parms[0]))
        folder.remove(self._string(client, _buf(parms[1])), _u32(parms[2]))
        return T.VINF_SUCCESS

    def _rename(self, client, parms):
        folder = self._folder(client, _u32(parms[0]))
        src, dst = self._string(client, _buf(parms[1])), self._string(client, _buf(parms[2]))
        folder.rename(src, dst, _u32(parms[3]))
        return T.VINF_SUCCESS

    def _readlink(self, client, parms):
        folder = self._folder(client, _u32(parms[0]))
        target = folder.readlink(self._string(client, _buf(parms[1])))
        self._put(parms[2], target + b"\0")
        return T.VINF_SUCCESS

    def _symlink(self, client, parms):
        folder = self._folder(client, _u32(parms[0]))
        path = self._string(client, _buf(parms[1]))
        target = self._string(client, _buf(parms[2]))
        st = folder.symlink(path, target)
        self._put(parms[3], S.pack_fsobjinfo(st))
        return T.VINF_SUCCESS

    _FUNCTIONS = {
        S.FN_QUERY_MAPPINGS: (3, _query_mappings), S.FN_QUERY_MAP_NAME: (2, _query_map_name),
        S.FN_CREATE: (3, _create), S.FN_CLOSE: (2, _close), S.FN_READ: (5, _read), S.FN_WRITE: (5, _write),
        S.FN_LIST: (8, _list), S.FN_INFORMATION: (5, _information), S.FN_REMOVE: (3, _remove),
        S.FN_MAP_FOLDER_OLD: (3, _map_folder_old), S.FN_UNMAP_FOLDER: (1, _unmap_folder),
        S.FN_RENAME: (4, _rename), S.FN_FLUSH: (2, _flush), S.FN_SET_UTF8: (0, _set_utf8),
        S.FN_MAP_FOLDER: (4, _map_folder), S.FN_READLINK: (3, _readlink), S.FN_SYMLINK: (4, _symlink),
        S.FN_SET_SYMLINKS: (0, _set_symlinks),
    }
