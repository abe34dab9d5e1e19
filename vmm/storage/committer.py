"""Metadata commits that a kill -9 of the writing process cannot tear.

A VDI allocation changes two places 1 MiB apart: the block map entry and cBlocksAllocated in the
header. `qemu-img check` flags an image where they disagree, and no single system call updates both.
So the writes of one commit (map entries, then header) are handed as one message to a tiny helper
process that shares the file: it applies a message only once it has all of it, and it finishes the
message even if we die meanwhile (it exits when our end of the pipe closes). Data blocks are always
written by us before the commit that points at them, so every state a crash can leave is consistent.
If the helper cannot be started the writes are applied in-process, in the same order.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys

from vmm.storage.blockio import pwrite_all

_ITEM = struct.Struct("<QI")
_LEN = struct.Struct("<I")

_HELPER = r"""
import os, struct, sys
fd, rfd, wfd = (int(a) for a in sys.argv[1:4])
def readn(n):
    parts = []
    while n:
        b = os.read(rfd, min(n, 1 << 20))
        if not b:
            return None
        parts.append(b)
        n -= len(b)
    return b"".join(parts)
while True:
    head = readn(4)
    if head is None:
        break
    body = readn(struct.unpack("<I", head)[0])
    if body is None:
        break
    err = 0
    pos = 0
    try:
        while pos < len(body):
            off, size = struct.unpack_from("<QI", body, pos)
            pos += 12
            chunk = body[pos:pos + size]
            pos += size
            done = 0
            while done < size:
                done += os.pwrite(fd, chunk[done:], off + done)
    except OSError as e:
        err = e.errno or 5
    os.write(wfd, struct.pack("<I", err))
"""


class Committer:
    """Applies ordered lists of (offset, bytes) writes to one file, atomically w.r.t. our own death."""

    def __init__(self, fd: int):
        self._fd = fd
        self._proc: subprocess.Popen | None = None
        self._wfd = self._rfd = -1
        self._failed = False

    def commit(self, writes: list[tuple[int, bytes]]) -> None:
        if not self._failed and self._proc is None:
            self._start()
        if self._proc is None:
            for off, data in writes:
                pwrite_all(self._fd, data, off)
            return
        body = b"".join(_ITEM.pack(off, len(data)) + bytes(data) for off, data in writes)
        msg = _LEN.pack(len(body)) + body
        try:
            view = memoryview(msg)
            while view:
                view = view[os.write(self._wfd, view):]
            reply = b""
            while len(reply) < 4:
                chunk = os.read(self._rfd, 4 - len(reply))
                if not chunk:
                    raise BrokenPipeError("VDI metadata helper exited")
                reply += chunk
        except BrokenPipeError:
            # The helper is gone (killed on its own). Applying the same bytes again is harmless
            # whether or not it got to them; from now on we write in-process.
            self.close()
            self._failed = True
            for off, data in writes:
                pwrite_all(self._fd, data, off)
            return
        err = _LEN.unpack(reply)[0]
        if err:
            raise OSError(err, os.strerror(err))

    def close(self) -> None:
        if self._proc is None:
            return
        os.close(self._wfd)
        os.close(self._rfd)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def _start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _HELPER, str(self._fd), str(to_child_r), str(from_child_w)],
                pass_fds=(self._fd, to_child_r, from_child_w), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, start_new_session=True)
        except OSError:
            self._failed = True
            for fd in (to_child_r, to_child_w, from_child_r, from_child_w):
                os.close(fd)
            return
        os.close(to_child_r)
        os.close(from_child_w)
        self._wfd, self._rfd = to_child_w, from_child_r

