"""A guest's serial shell over the VM's `tcpserver` serial port (VirtualBox's TCP port mode)."""

from __future__ import annotations

import socket
import threading
import time


class TcpSerial:
    def __init__(self, port: int, host: str = "127.0.0.1", connect_timeout: float = 30):
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self.sock = socket.create_connection((host, port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.sock.settimeout(None)
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._eof = False
        self._seq = 0
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            with self._cond:
                if not chunk:
                    self._eof = True
                    self._cond.notify_all()
                    return
                self._buf += chunk
                self._cond.notify_all()

    @property
    def size(self) -> int:
        with self._cond:
            return len(self._buf)

    @property
    def closed_by_peer(self) -> bool:
        return self._eof

    def text(self, start: int = 0) -> str:
        with self._cond:
            return self._buf[start:].decode(errors="replace")

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def wait_for(self, text: str, timeout: float, start: int = 0) -> int:
        """Index just past `text` in the output (searched from `start`)."""
        needle = text.encode()
        deadline = time.monotonic() + timeout
        with self._cond:
            while (i := self._buf.find(needle, start)) < 0:
                if self._eof:
                    raise ConnectionError(f"serial connection closed before {text!r}:\n{self._tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {text!r} within {timeout}s:\n{self._tail()}")
                self._cond.wait(left)
            return i + len(needle)

    def wait_eof(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _tail(self) -> str:
        return self._buf[-2000:].decode(errors="replace")

    def start_command(self, command: str) -> tuple[int, int]:
        """Type a command wrapped in start/end markers; returns (sequence number, output offset)."""
        self._seq += 1
        n = self._seq
        start = self.size
        # Split quotes keep the terminal's echo of the line from matching the markers.
        self.send(f"echo __ST''ART_{n}__; {command}; echo __DO''NE_{n}__ $?\r")
        return n, start

    def finish_command(self, n: int, start: int, timeout: float) -> tuple[int, str]:
        begin = self.wait_for(f"__START_{n}__\r\n", timeout, start)
        end = self.wait_for(f"__DONE_{n}__ ", timeout, begin)
        self.wait_for("\n", timeout, end)
        with self._cond:
            out = self._buf[begin:end - len(f"__DONE_{n}__ ")].decode(errors="replace")
            status = int(self._buf[end:].split()[0])
        return status, out.replace("\r\n", "\n")

    def run(self, command: str, timeout: float = 120) -> tuple[int, str]:
        """Run a shell command in the guest; (exit status, output)."""
        n, start = self.start_command(command)
        return self.finish_command(n, start, timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
