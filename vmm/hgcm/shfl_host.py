"""Host-side file access for one shared folder: the only code that touches the host's files.

Every guest path is taken relative to the share's root, never with a `..` component, and the
real location of what it names (its parent, and the object itself where it is followed) must
stay inside the root unless the share allows symlinks; an opened descriptor is checked again
through /proc/self/fd, so a symlink swapped in by the host between check and open does not
lead out either.  Host errors come back as VERR_* codes (IPRT's errno mapping)."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

from vmm.devices import vmmdev_types as T
from vmm.hgcm import shfl_types as S

VERR_FILE_NOT_FOUND = -102
VERR_PATH_NOT_FOUND = -103
VERR_INVALID_NAME = -104
VERR_ALREADY_EXISTS = -105
VERR_TOO_MANY_OPEN_FILES = -106
VERR_WRITE_PROTECT = -113
VERR_SHARING_VIOLATION = -114
VERR_NOT_SAME_DEVICE = -119
VERR_FILENAME_TOO_LONG = -120
VERR_DIR_NOT_EMPTY = -125
VERR_NOT_A_DIRECTORY = -126
VERR_IS_A_DIRECTORY = -127
VERR_FILE_TOO_BIG = -128
VERR_DISK_FULL = -152
VERR_TOO_MANY_SYMLINKS = -156
VERR_NO_MORE_FILES = -201
VERR_DEV_IO_ERROR = -250
VERR_RESOURCE_BUSY = -138
VERR_TRY_AGAIN = -52
VERR_UNRESOLVED_ERROR = -35

_ERRNO = {
    errno.ENOENT: VERR_FILE_NOT_FOUND, errno.ENOTDIR: VERR_PATH_NOT_FOUND, errno.EACCES: T.VERR_ACCESS_DENIED,
    errno.EPERM: T.VERR_ACCESS_DENIED, errno.EEXIST: VERR_ALREADY_EXISTS, errno.EISDIR: VERR_IS_A_DIRECTORY,
    errno.ENOTEMPTY: VERR_DIR_NOT_EMPTY, errno.EROFS: VERR_WRITE_PROTECT, errno.ENOSPC: VERR_DISK_FULL,
    errno.EDQUOT: VERR_DISK_FULL, errno.EMFILE: VERR_TOO_MANY_OPEN_FILES,
    errno.ENFILE: VERR_TOO_MANY_OPEN_FILES,
    errno.ENAMETOOLONG: VERR_FILENAME_TOO_LONG, errno.EXDEV: VERR_NOT_SAME_DEVICE,
    errno.EBADF: T.VERR_INVALID_HANDLE,
    errno.EINVAL: T.VERR_INVALID_PARAMETER, errno.ELOOP: VERR_TOO_MANY_SYMLINKS,
    errno.EFBIG: VERR_FILE_TOO_BIG,
    errno.EIO: VERR_DEV_IO_ERROR, errno.EBUSY: VERR_RESOURCE_BUSY, errno.ENOMEM: T.VERR_NO_MEMORY,
    errno.EAGAIN: VERR_TRY_AGAIN, errno.ENOTSUP: T.VERR_NOT_SUPPORTED, errno.ETXTBSY: VERR_SHARING_VIOLATION,
}


class ShflError(Exception):
    def __init__(self, rc: int, text: str = ""):
        super().__init__(text or str(rc))
        self.rc = rc


def verr(e: OSError) -> int:
    return _ERRNO.get(e.errno, VERR_UNRESOLVED_ERROR)


@dataclass
class HostHandle:
    """An opened object: a file or directory descriptor; directories keep their listing."""
    fd: int
    path: str
    is_dir: bool
    writable: bool = False
    append: bool = False
    listing: list | None = None
    position: int = 0
    closed: bool = field(default=False)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


class HostFolder:
    def __init__(self, host_path: str, writable: bool = True, symlinks: bool = False):
        self.root = os.path.realpath(host_path)
        self.writable = writable
        self.symlinks = symlinks

    # --- confinement ---------------------------------------------------------------------------
    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root.rstrip("/") + "/")

    def path(self, rel: str, follow: bool) -> str:
        """The host path of a guest path; VERR_INVALID_NAME for `..`, access denied for escapes."""
        if "\0" in rel:
            raise ShflError(VERR_INVALID_NAME, "NUL in a path")
        parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ShflError(VERR_INVALID_NAME, "'..' in a path")
        if any(len(p.encode("utf-8", "surrogateescape")) > 255 for p in parts):
            raise ShflError(VERR_FILENAME_TOO_LONG)
        host = os.path.join(self.root, *parts)
        if not parts or self.symlinks:
            return host
        if not self._inside(os.path.realpath(os.path.dirname(host))):
            raise ShflError(T.VERR_ACCESS_DENIED, "path leaves the shared folder")
        if follow and os.path.islink(host) and not self._inside(os.path.realpath(host)):
            raise ShflError(T.VERR_ACCESS_DENIED, "symlink leaves the shared folder")
        return host

    def _check_fd(self, fd: int) -> None:
        if self.symlinks:
            return
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return
        if not self._inside(real):
            os.close(fd)
            raise ShflError(T.VERR_ACCESS_DENIED, "opened object is outside the shared folder")

    def _need_write(self) -> None:
        if not self.writable:
            raise ShflError(VERR_WRITE_PROTECT)

    # --- create / open ---------------------------------------------------------------------------
    def lookup(self, rel: str, follow: bool) -> tuple[int, os.stat_result | None]:
        host = self.path(rel, follow)
        try:
            st = os.stat(host) if follow else os.lstat(host)
        except OSError as e:
            return self._not_found(host, e), None
        return S.FILE_EXISTS, st

    def _not_found(self, host: str, e: OSError) -> int:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise ShflError(verr(e))
        return S.FILE_NOT_FOUND if os.path.isdir(os.path.dirname(host)) else S.PATH_NOT_FOUND

    def create(self, rel: str, flags: int, mode: int, follow: bool
               ) -> tuple[int, HostHandle | None, os.stat_result | None]:
        """SHFL_FN_CREATE without SHFL_CF_LOOKUP: (result, handle or None, info)."""
        host = self.path(rel, True)
        if_exists, if_new = flags & S.CF_ACT_MASK_IF_EXISTS, flags & S.CF_ACT_MASK_IF_NEW
        access = flags & S.CF_ACCESS_MASK_RW
        try:
            st = os.stat(host)
        except OSError as e:
            st = None
            result = self._not_found(host, e)
        want_dir = bool(flags & S.CF_DIRECTORY) or (st is not None and stat.S_ISDIR(st.st_mode)
                                                      and if_exists == S.CF_ACT_OPEN_IF_EXISTS)
        if st is not None:
            if if_exists == S.CF_ACT_FAIL_IF_EXISTS:
                return S.FILE_EXISTS, None, st
            if want_dir:
                if not stat.S_ISDIR(st.st_mode):
                    raise ShflError(VERR_NOT_A_DIRECTORY)
                if if_exists != S.CF_ACT_OPEN_IF_EXISTS:
                    return S.FILE_EXISTS, None, st
                return S.FILE_EXISTS, self._open_dir(host), st
            truncate = if_exists in (S.CF_ACT_REPLACE_IF_EXISTS, S.CF_ACT_OVERWRITE_IF_EXISTS)
            if truncate or access & S.CF_ACCESS_WRITE or flags & S.CF_ACCESS_ATTR_WRITE:
                self._need_write()
            h = self._open_file(host, access, flags, truncate, create=False, mode=0)
            return (S.FILE_REPLACED if truncate else S.FILE_EXISTS), h, os.fstat(h.fd)
        if if_new == S.CF_ACT_FAIL_IF_NEW or result == S.PATH_NOT_FOUND:
            return result, None, None
        self._need_write()
        perm = (mode & 0o7777) or (0o777 if want_dir else 0o666)
        if want_dir:
            try:
                os.mkdir(host, perm)
            except OSError as e:
                raise ShflError(verr(e))
            h = self._open_dir(host)
            return S.FILE_CREATED, h, os.fstat(h.fd)
        h = self._open_file(host, access, flags, False, create=True, mode=perm)
        return S.FILE_CREATED, h, os.fstat(h.fd)

    def _open_dir(self, host: str) -> HostHandle:
        try:
            fd = os.open(host, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise ShflError(verr(e))
        self._check_fd(fd)
        return HostHandle(fd, host, True)

    def _open_file(
        self, host: str, access: int, flags: int, truncate: bool, create: bool, mode: int
    ) -> HostHandle:
        writable = bool(access & S.CF_ACCESS_WRITE)
        oflags = {S.CF_ACCESS_READ: os.O_RDONLY, S.CF_ACCESS_WRITE: os.O_WRONLY,
                  S.CF_ACCESS_MASK_RW: os.O_RDWR}.get(access, os.O_RDONLY)
        append = writable and bool(flags & S.CF_ACCESS_APPEND)
        oflags |= os.O_CLOEXEC | (os.O_APPEND if append else 0)
        if create:
            oflags |= os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(host, oflags, mode)
        except OSError as e:
            raise ShflError(verr(e))
        self._check_fd(fd)
        if truncate:
            try:
                os.ftruncate(fd, 0)
            except OSError as e:
                os.close(fd)
                raise ShflError(verr(e))
        return HostHandle(fd, host, False, writable=writable, append=append)

    # --- data -------------------------------------------------------------------------------------
    def read(self, h: HostHandle, offset: int, count: int) -> bytes:
        if h.is_dir:
            raise ShflError(VERR_IS_A_DIRECTORY)
        try:
            return os.pread(h.fd, count, offset)
        except OSError as e:
            raise ShflError(verr(e))

    def write(self, h: HostHandle, offset: int, data) -> tuple[int, int]:
        """(bytes written, file offset after them); append handles write at the end."""
        self._need_write()
        if h.is_dir:
            raise ShflError(VERR_IS_A_DIRECTORY)
        if not h.writable:
            raise ShflError(T.VERR_ACCESS_DENIED)
        try:
            if h.append:
                n = os.write(h.fd, data)
                return n, os.lseek(h.fd, 0, os.SEEK_CUR)
            n = os.pwrite(h.fd, data, offset)
            return n, offset + n
        except OSError as e:
            raise ShflError(verr(e))

    def flush(self, h: HostHandle) -> None:
        if not h.is_dir and h.writable:
            try:
                os.fsync(h.fd)
            except OSError as e:
                raise ShflError(verr(e))

    def list_next(self, h: HostHandle) -> tuple[bytes, os.stat_result] | None:
        """The next directory entry (with "." and ".." first, as IPRT lists them), or None."""
        if not h.is_dir:
            raise ShflError(VERR_NOT_A_DIRECTORY)
        if h.listing is None:
            try:
                names = sorted(os.listdir(h.fd))
            except OSError as e:
                raise ShflError(verr(e))
            h.listing = [".", ".."] + names
        while h.position < len(h.listing):
            name = h.listing[h.position]
            try:
                st = os.stat(name, dir_fd=h.fd, follow_symlinks=False)
            except OSError:
                h.position += 1                 # gone since the listing was taken
                continue
            return os.fsencode(name), st
        return None

    # --- information -------------------------------------------------------------------------------
    def stat(self, h: HostHandle) -> os.stat_result:
        try:
            return os.fstat(h.fd)
        except OSError as e:
            raise ShflError(verr(e))

    def set_info(self, h: HostHandle, atime: int, mtime: int, mode: int) -> os.stat_result:
        self._need_write()
        try:
            st = os.fstat(h.fd)
            if atime or mtime:
                os.utime(h.fd, ns=(atime or st.st_atime_ns, mtime or st.st_mtime_ns))
            if mode & 0o7777:
                os.fchmod(h.fd, mode & 0o7777)
            return os.fstat(h.fd)
        except OSError as e:
            raise ShflError(verr(e))

    def set_size(self, h: HostHandle, size: int) -> os.stat_result:
        self._need_write()
        if h.is_dir:
            raise ShflError(VERR_IS_A_DIRECTORY)
        if size < 0:
            raise ShflError(T.VERR_INVALID_PARAMETER)
        try:
            os.ftruncate(h.fd, size)
            return os.fstat(h.fd)
        except OSError as e:
            raise ShflError(verr(e))

    def volume(self) -> bytes:
        try:
            vfs = os.statvfs(self.root)
            st = os.stat(self.root)
        except OSError as e:
            raise ShflError(verr(e))
        return S.pack_volinfo(vfs.f_blocks * vfs.f_frsize, vfs.f_bavail * vfs.f_frsize, vfs.f_frsize,
                              st.st_dev & 0xFFFF_FFFF, not self.writable)

    # --- names ---------------------------------------------------------------------------------------
    def remove(self, rel: str, flags: int) -> None:
        self._need_write()
        host = self.path(rel, False)
        if host == self.root:
            raise ShflError(T.VERR_ACCESS_DENIED)
        try:
            st = os.lstat(host)
            if stat.S_ISDIR(st.st_mode):
                if not flags & S.REMOVE_DIR:
                    raise ShflError(VERR_IS_A_DIRECTORY)
                os.rmdir(host)
            else:
                if stat.S_ISLNK(st.st_mode) and not flags & (S.REMOVE_SYMLINK | S.REMOVE_FILE):
                    raise ShflError(T.VERR_INVALID_PARAMETER)
                if not stat.S_ISLNK(st.st_mode) and not flags & S.REMOVE_FILE:
                    raise ShflError(VERR_NOT_A_DIRECTORY)
                os.unlink(host)
        except OSError as e:
            raise ShflError(verr(e))

    def rename(self, src: str, dst: str, flags: int) -> None:
        self._need_write()
        hs, hd = self.path(src, False), self.path(dst, False)
        if self.root in (hs, hd):
            raise ShflError(T.VERR_ACCESS_DENIED)
        try:
            if not flags & S.RENAME_REPLACE_IF_EXISTS and os.path.lexists(hd):
                raise ShflError(VERR_ALREADY_EXISTS)
            os.rename(hs, hd)
        except OSError as e:
            raise ShflError(verr(e))

    def readlink(self, rel: str) -> bytes:
        host = self.path(rel, False)
        try:
            return os.fsencode(os.readlink(host))
        except OSError as e:
            raise ShflError(verr(e))

    def symlink(self, rel: str, target: str) -> os.stat_result:
        """A guest-made symlink: only where the share allows them (EROFS otherwise, as VirtualBox)."""
        if not self.writable or not self.symlinks:
            raise ShflError(VERR_WRITE_PROTECT)
        if "\0" in target:
            raise ShflError(VERR_INVALID_NAME)
        host = self.path(rel, False)
        try:
            os.symlink(target, host)
            return os.lstat(host)
        except OSError as e:
            raise ShflError(verr(e))
