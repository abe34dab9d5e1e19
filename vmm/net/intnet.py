"""Internal networks (`--nic<N> intnet --intnet<N> name`): the VMs of this host on the same
network name see each other's frames, and nobody else's.

No switch process: every attached NIC binds a Unix datagram socket in a per-network folder
under the user's runtime directory (0700), and a frame sent is delivered to every other socket
in that folder — a hub, as VirtualBox's intnet is a switch shared by the VM processes.  A
receive thread hands incoming frames to the NIC.
"""

from __future__ import annotations

import hashlib
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable

from vmm.net.frame import MAX_FRAME

log = logging.getLogger("vboxpy.intnet")
PEER_REFRESH_S = 0.5


class IntNetError(Exception):
    pass


def default_runtime_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/vboxpy-{os.getuid()}"
    return os.path.join(base, "vboxpy-intnet")


class IntNetBackend:
    def __init__(self, name: str, runtime_dir: str = ""):
        self.name = name
        self.description = f"internal network '{name}'"
        root = runtime_dir or default_runtime_dir()
        self.folder = os.path.join(root, hashlib.sha256(name.encode()).hexdigest()[:16])
        try:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
        except OSError as e:
            raise IntNetError(f"cannot create {self.folder}: {e.strerror}") from None
        self.path = os.path.join(self.folder, f"{os.getpid()}-{id(self):x}.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.bind(self.path)
        except OSError as e:
            self.sock.close()
            raise IntNetError(f"cannot bind {self.path}: {e.strerror}") from None
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.setblocking(False)
        self._sink: Callable[[bytes], None] | None = None
        self._peers: list[str] = []
        self._peers_at = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._recv_loop, name=f"IntNet-{name}", daemon=True)
        self._thread.start()

    def attach(self, sink: Callable[[bytes], None]) -> None:
        self._sink = sink

    def _refresh(self) -> None:
        try:
            names = os.listdir(self.folder)
        except OSError:
            names = []
        self._peers = [os.path.join(self.folder, n) for n in names
                       if n.endswith(".sock") and os.path.join(self.folder, n) != self.path]
        self._peers_at = time.monotonic()

    def send(self, frame: bytes) -> None:
        if self._closed or len(frame) > MAX_FRAME:
            return
        if time.monotonic() - self._peers_at > PEER_REFRESH_S:
            self._refresh()
        for peer in self._peers:
            try:
                self.sock.sendto(frame, peer)
            except (ConnectionRefusedError, FileNotFoundError):
                try:                          # a VM process that died without cleaning up
                    os.unlink(peer)
                except OSError:
                    pass
                self._peers_at = 0.0
            except (BlockingIOError, OSError):
                pass                          # a full peer drops the frame, as a switch would

    def _recv_loop(self) -> None:
        while not self._closed:
            try:
                ready, _, _ = select.select([self.sock], [], [], 0.5)
                if not ready:
                    continue
                frame = self.sock.recv(MAX_FRAME + 1)
            except BlockingIOError:
                continue
            except (OSError, ValueError):
                return
            if self._closed:
                return
            if self._sink is not None and frame:
                self._sink(frame)

    def close(self) -> None:
        self._closed = True
        try:
            os.unlink(self.path)
        except OSError:
            pass
        self._thread.join(1)
        self.sock.close()
