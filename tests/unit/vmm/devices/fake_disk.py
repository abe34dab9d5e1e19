"""A minimal DiskImage over a plain file for device tests (a device must not care about the format);
it records discards and flushes so tests can see what the guest asked for."""

import os


class RawFile:
    """A minimal DiskImage over a plain file."""


    def __init__(self, path, size, read_only=False):
        self.path, self.size, self.read_only = str(path), size, read_only
        with open(path, "wb") as f:
            f.truncate(size)
        self.fd = os.open(path, os.O_RDWR)
        self.discarded, self.flushes = [], 0

    def read_at(self, offset, length):
        return os.pread(self.fd, length, offset)

    def readinto_at(self, offset, buf):
        assert 0 <= offset and offset + len(buf) <= self.size
        os.preadv(self.fd, [buf], offset)

    def write_at(self, offset, data):
        assert 0 <= offset and offset + len(data) <= self.size
        os.pwrite(self.fd, data, offset)

    def discard(self, offset, length):
        self.discarded.append((offset, length))

    def flush(self):
        self.flushes += 1

    def close(self):
        os.close(self.fd)
