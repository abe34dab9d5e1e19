"""A VMDK image behind the DiskImage protocol: a descriptor naming one or more extents (hosted
sparse, flat or zero), embedded in a sparse file (monolithicSparse, streamOptimized) or standing
alone (monolithicFlat, twoGbMaxExtentSparse/Flat), as VirtualBox's VMDK backend handles them.

The descriptor's disk database carries the UUIDs VirtualBox registers the medium by; like VDI's
modification UUID, ddb.uuid.modification is renewed at the first write after opening.
"""

from __future__ import annotations

import bisect
import os
import threading
import uuid as uuidlib

from vmm.storage.blockio import pread_into, pwrite_all
from vmm.storage.image import DiskImageError
from vmm.storage.locking import open_image_file
from vmm.storage.vmdk_descriptor import Descriptor, Extent, extent_path, parse
from vmm.storage.vmdk_header import SECTOR, has_magic, parse_header
from vmm.storage.vmdk_sparse import STREAM_READ_ONLY, SparseExtent

# createType -> (MediumVariant kind, subformat) as showmediuminfo prints them
VARIANTS = {
    "monolithicSparse": ("dynamic", "default"),
    "streamOptimized": ("dynamic", "streamOptimized"),
    "monolithicFlat": ("fixed", "default"),
    "twoGbMaxExtentSparse": ("dynamic", "split2G"),
    "twoGbMaxExtentFlat": ("fixed", "split2G"),
    "vmfs": ("fixed", "ESX"),
    "vmfsSparse": ("dynamic", "ESX"),
    "custom": ("dynamic", "default"),
}
_ZEROS = bytes(1 << 20)


class FlatExtent:
    """A flat extent: the disk's bytes at `offset` in a plain file."""

    def __init__(self, path: str, fd: int, offset: int, sectors: int, read_only: bool):
        self.path = path
        self._fd = fd
        self._offset = offset
        self.size = sectors * SECTOR
        self.read_only = read_only

    def readinto(self, offset: int, mv: memoryview) -> None:
        n = os.preadv(self._fd, [mv], self._offset + offset)
        if n < len(mv):         # a flat file shorter than its extent reads zeros past its end
            if n < 0:
                n = 0
            try:
                pread_into(self._fd, mv[n:], self._offset + offset + n, self.path)
            except DiskImageError:
                mv[n:] = bytes(len(mv) - n)

    def write(self, offset: int, mv: memoryview) -> None:
        pwrite_all(self._fd, mv, self._offset + offset)

    def discard(self, offset: int, length: int) -> None:
        end = offset + length
        while offset < end:
            n = min(end - offset, len(_ZEROS))
            self.write(offset, memoryview(_ZEROS)[:n])
            offset += n

    def next_allocated(self, offset: int) -> int:
        return offset

    def flush(self) -> None:
        if not self.read_only:
            os.fdatasync(self._fd)

    def close(self) -> None:
        self.flush()

    @property
    def file_size(self) -> int:
        return os.fstat(self._fd).st_size


class ZeroExtent:
    def __init__(self, sectors: int):
        self.size = sectors * SECTOR
        self.path = ""

    def readinto(self, offset: int, mv: memoryview) -> None:
        mv[:] = bytes(len(mv))

    def write(self, offset: int, mv: memoryview) -> None:
        if any(mv):
            raise DiskImageError("VMDK: write of data into a ZERO extent")

    def discard(self, offset: int, length: int) -> None:
        pass

    def next_allocated(self, offset: int) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    file_size = 0


class VmdkImage:
    format = "VMDK"
    parent = None
    parent_uuid = None
    parent_modify_uuid = None

    def __init__(self, path: str, descriptor: Descriptor, extents: list, fds: list[int], read_only: bool,
                 embedded: tuple[int, int, int] | None):
        self.path = path
        self.read_only = read_only
        self.descriptor = descriptor
        self._extents = extents
        self._fds = fds                 # every file we opened (closed with the image)
        self._embedded = embedded       # (fd, byte offset, byte room) of an embedded descriptor
        self._starts = []
        pos = 0
        for e in extents:
            self._starts.append(pos)
            pos += e.size
        self.size = pos
        self._single = extents[0] if len(extents) == 1 else None   # the common case: skip the dispatch
        self._lock = threading.RLock()
        self._first_write = True
        self._closed = False

    # ---- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str, read_only: bool = False) -> VmdkImage:
        fds: list[int] = []
        try:
            fd = open_image_file(path, read_only)
            fds.append(fd)
            head = os.pread(fd, SECTOR, 0)
            embedded = None
            main_sparse = None
            if has_magic(head):
                h = parse_header(head, path)
                if not h.descriptor_offset:
                    raise DiskImageError(f"{path}: VMDK: a sparse extent without a descriptor (open the "
                                         "descriptor file that names it)")
                room = h.descriptor_size * SECTOR
                text = os.pread(fd, room, h.descriptor_offset * SECTOR)
                if len(text) < room:
                    raise DiskImageError(f"{path}: VMDK: the embedded descriptor lies outside the file")
                desc = parse(text, path)
                embedded = (fd, h.descriptor_offset * SECTOR, room)
                main_sparse = SparseExtent(path, fd, read_only, h)
            else:
                size = os.fstat(fd).st_size
                if size > (1 << 20):
                    raise DiskImageError(f"{path}: VMDK: not a VMDK image (no sparse header, and "
                                         f"too large to "
                                         "be a descriptor)")
                desc = parse(os.pread(fd, size, 0), path)
                if desc.create_type in ("monolithicSparse", "streamOptimized"):
                    raise DiskImageError(f"{path}: VMDK: a {desc.create_type} image must start with a sparse "
                                         "header")
            extents = []
            for i, ext in enumerate(desc.extents):
                extents.append(cls._open_extent(path, desc, ext, i, read_only, fds, main_sparse))
            img = cls(path, desc, extents, fds, read_only, embedded)
        except BaseException:
            for f in fds:
                os.close(f)
            raise
        return img

    @classmethod
    def open_in_file(cls, path: str, offset: int, length: int) -> VmdkImage:
        """A monolithic sparse or streamOptimized VMDK stored at `offset` inside another file (an
        OVA is a tar: its members lie there unchanged), opened read-only without copying it out."""
        fd = open_image_file(path, True)
        try:
            size = os.fstat(fd).st_size
            if offset < 0 or length < 3 * SECTOR or offset + length > size:
                raise DiskImageError(f"{path}: VMDK: {length} bytes at {offset} are not inside the file")
            head = os.pread(fd, SECTOR, offset)
            if not has_magic(head):
                raise DiskImageError(f"{path}: VMDK: no sparse extent header at offset {offset}")
            h = parse_header(head, path)
            room = h.descriptor_size * SECTOR
            if not h.descriptor_offset or h.descriptor_offset * SECTOR + room > length:
                raise DiskImageError(f"{path}: VMDK: the embedded descriptor lies outside the image")
            desc = parse(os.pread(fd, room, offset + h.descriptor_offset * SECTOR), path)
            extent = SparseExtent(path, fd, True, h, base=offset, length=length)
            if len(desc.extents) != 1 or desc.extents[0].type != "SPARSE" \
                    or desc.extents[0].sectors != extent.h.capacity:
                raise DiskImageError(f"{path}: VMDK: the image at offset {offset} is not a single "
                                     f"sparse extent")
            return cls(path, desc, [extent], [fd], True, None)
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _open_extent(path: str, desc: Descriptor, ext: Extent, i: int, read_only: bool, fds: list[int],
                     main_sparse: SparseExtent | None):
        if ext.type == "ZERO":
            return ZeroExtent(ext.sectors)
        ro = read_only or ext.access != "RW"
        if ext.access == "NOACCESS":
            raise DiskImageError(f"{path}: VMDK: extent {i + 1} is marked NOACCESS")
        if main_sparse is not None:
            if len(desc.extents) != 1 or ext.type != "SPARSE":
                raise DiskImageError(f"{path}: VMDK: a monolithic sparse file must describe exactly its own "
                                     "sparse extent")
            if ext.sectors != main_sparse.h.capacity:
                raise DiskImageError(f"{path}: VMDK: the descriptor says {ext.sectors} sectors "
                                     f"but the extent "
                                     f"holds {main_sparse.h.capacity}")
            return main_sparse
        fpath = extent_path(path, ext.filename)
        fd = open_image_file(fpath, ro)
        fds.append(fd)
        if ext.type == "SPARSE":
            head = os.pread(fd, SECTOR, 0)
            sp = SparseExtent(fpath, fd, ro, parse_header(head, fpath))
            if ext.sectors > sp.h.capacity:
                raise DiskImageError(f"{path}: VMDK: extent {i + 1} claims {ext.sectors} sectors but "
                                     f"{ext.filename} holds {sp.h.capacity}")
            sp.size = ext.sectors * SECTOR
            return sp
        return FlatExtent(fpath, fd, ext.offset * SECTOR, ext.sectors, ro)

    # ---- facts -----------------------------------------------------------------------------------

    @property
    def uuid(self) -> str | None:
        return self.descriptor.uuid("image")

    @property
    def modify_uuid(self) -> str | None:
        return self.descriptor.uuid("modification")

    @property
    def create_type(self) -> str:
        return self.descriptor.create_type

    @property
    def variant(self) -> str:
        return VARIANTS[self.create_type][0]

    @property
    def subformat(self) -> str:
        return VARIANTS[self.create_type][1]

    @property
    def file_size(self) -> int:
        seen, total = set(), 0
        for fd in self._fds:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
        return total

    @property
    def grain_size(self) -> int:
        for e in self._extents:
            if isinstance(e, SparseExtent):
                return e.h.grain_bytes
        return 0

    def allocated_grains(self) -> int:
        return sum(e.allocated_grains() for e in self._extents if isinstance(e, SparseExtent))

    def extent_files(self) -> list[str]:
        return [e.path for e in self._extents if e.path]

    # ---- DiskImage -------------------------------------------------------------------------------

    def read_at(self, offset: int, length: int) -> bytes:
        buf = bytearray(length)
        self.readinto_at(offset, memoryview(buf))
        return bytes(buf)

    def readinto_at(self, offset: int, buf) -> None:
        mv = memoryview(buf)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        n = len(mv)
        if offset < 0 or offset + n > self.size:
            raise DiskImageError(f"{self.path}: read of {n} bytes at {offset} is outside the disk")
        if self._single is not None:
            self._single.readinto(offset, mv)
            return
        self._each(offset, mv, lambda e, off, piece: e.readinto(off, piece))

    def write_at(self, offset: int, data) -> None:
        mv = memoryview(data)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        n = len(mv)
        if self.read_only:
            raise DiskImageError(f"{self.path}: image is opened read-only")
        if offset < 0 or offset + n > self.size:
            raise DiskImageError(f"{self.path}: write of {n} bytes at {offset} is outside the disk")
        if not n:
            return
        if self._first_write:
            self._check_writable()
            self._note_write()
        if self._single is not None and not self._single.read_only:
            self._single.write(offset, mv)
            return
        self._each(offset, mv, self._write_piece)

    def _check_writable(self) -> None:
        """Refuse before anything is written (the descriptor's modification UUID included)."""
        if self.create_type == "streamOptimized":
            raise DiskImageError(STREAM_READ_ONLY.format(path=self.path))
        for d, e in zip(self.descriptor.extents, self._extents, strict=True):
            if d.access != "RW" and not isinstance(e, ZeroExtent):
                raise DiskImageError(f"{self.path}: VMDK: extent {e.path} is read-only ({d.access})")

    def _write_piece(self, e, off: int, piece: memoryview) -> None:
        if getattr(e, "read_only", False):
            raise DiskImageError(f"{self.path}: VMDK: extent {e.path} is read-only")
        e.write(off, piece)

    def discard(self, offset: int, length: int) -> None:
        if self.read_only:
            raise DiskImageError(f"{self.path}: image is opened read-only")
        if offset < 0 or length < 0 or offset + length > self.size:
            raise DiskImageError(f"{self.path}: discard of {length} bytes at {offset} is outside the disk")
        if self._first_write:
            self._check_writable()
            self._note_write()
        self._each(offset, memoryview(bytearray(0)), None, length,
                   lambda e, off, n: e.discard(off, n))

    def _each(self, offset: int, mv: memoryview, fn, length: int | None = None, range_fn=None) -> None:
        n = len(mv) if length is None else length
        pos = 0
        with self._lock:
            i = bisect.bisect_right(self._starts, offset) - 1
            while pos < n:
                e = self._extents[i]
                within = offset + pos - self._starts[i]
                chunk = min(n - pos, e.size - within)
                if range_fn is not None:
                    range_fn(e, within, chunk)
                else:
                    fn(e, within, mv[pos:pos + chunk])
                pos += chunk
                i += 1

    def next_allocated(self, offset: int) -> int:
        with self._lock:
            i = bisect.bisect_right(self._starts, offset) - 1
            while 0 <= i < len(self._extents):
                e = self._extents[i]
                start = self._starts[i]
                nxt = e.next_allocated(max(0, offset - start))
                if nxt < e.size:
                    return start + nxt
                i += 1
        return self.size

    def _note_write(self) -> None:
        """A fresh modification UUID and content ID (CID) in the descriptor at the first write, as
        VirtualBox and qemu do (a delta image records its parent's CID)."""
        with self._lock:
            if not self._first_write:
                return
            self._first_write = False
            self.descriptor.ddb["ddb.uuid.modification"] = str(uuidlib.uuid4())
            self.descriptor.cid = uuidlib.uuid4().int & 0xFFFFFFFE
            self._write_descriptor()

    def _write_descriptor(self) -> None:
        text = self.descriptor.render().encode()
        if self._embedded is not None:
            fd, off, room = self._embedded
            if len(text) > room:
                raise DiskImageError(f"{self.path}: VMDK: the descriptor no longer fits its embedded area")
            pwrite_all(fd, text.ljust(room, b"\0"), off)
            return
        tmp = f"{self.path}.{os.getpid()}.desc"
        with open(tmp, "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def set_uuids(self, image: str | None = None, modification: str | None = None) -> None:
        with self._lock:
            if self.read_only:
                raise DiskImageError(f"{self.path}: image is opened read-only")
            if image is not None:
                self.descriptor.ddb["ddb.uuid.image"] = image
            if modification is not None:
                self.descriptor.ddb["ddb.uuid.modification"] = modification
            self._write_descriptor()

    def resize(self, new_size: int) -> None:
        """Refused, as VirtualBox's VMDK backend refuses it for these variants (VERR_NOT_SUPPORTED):
        clone to a VDI, resize that."""
        raise DiskImageError(f"{self.path}: VMDK: resizing a {self.create_type} image is not supported "
                             "(clone it to VDI first)")

    def flush(self) -> None:
        with self._lock:
            for e in self._extents:
                e.flush()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                for e in self._extents:
                    e.close()
            finally:
                for fd in self._fds:
                    os.close(fd)
                self._fds = []

    def __enter__(self) -> VmdkImage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<VmdkImage {self.path!r} {self.create_type} size={self.size} uuid={self.uuid}>"


def looks_like_descriptor(head: bytes) -> bool:
    """Opening by content: a text descriptor starts with its signature line (comments and blank
    lines may come first, as qemu's probe allows)."""
    text = head[:1024]
    if b"\0" in text.split(b"\n", 1)[0]:
        return False
    for line in text.splitlines():
        s = line.strip()
        if s.lower().startswith(b"# disk descriptorfile"):
            return True
        if s and not s.startswith(b"#"):
            return False
    return False
