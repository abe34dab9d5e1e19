"""Drive a guest's serial shell over a child process's stdin/stdout (our VM runner or QEMU)."""

from __future__ import annotations

import os
import subprocess
import threading
import time

READY_MARKER = "VBOXPY-GUEST-READY"


class GuestConsole:
    def __init__(self, argv: list[str], env: dict | None = None, log_path: str | None = None):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, bufsize=0)
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._log = open(log_path, "ab") if log_path else None
        self._seq = 0
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        while True:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            with self._cond:
                if not chunk:
                    self._buf += b"\n<EOF>"
                    self._cond.notify_all()
                    return
                self._buf += chunk
                if self._log:
                    self._log.write(chunk)
                    self._log.flush()
                self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return self._buf.decode(errors="replace")

    def wait_for(self, text: str, timeout: float, start: int = 0) -> int:
        """Index just past `text` in the output (searched from `start`)."""
        needle = text.encode()
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                i = self._buf.find(needle, start)
                if i >= 0:
                    return i + len(needle)
                if self._buf.endswith(b"<EOF>"):
                    raise RuntimeError(f"guest exited before {text!r}:\n{self._tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {text!r} within {timeout}s:\n{self._tail()}")
                self._cond.wait(left)

    def _tail(self) -> str:
        return self._buf[-3000:].decode(errors="replace")

    def run(self, command: str, timeout: float = 120) -> tuple[int, str]:
        """Run a shell command in the guest; returns (exit status, output)."""
        self._seq += 1
        n = self._seq
        with self._cond:
            start = len(self._buf)
        # Split quotes keep the terminal's echo of this line from matching the markers.
        line = f"echo __ST''ART_{n}__; {command}; echo __DO''NE_{n}__ $?\n"
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()
        begin = self.wait_for(f"__START_{n}__\r\n", timeout, start)
        end = self.wait_for(f"__DONE_{n}__ ", timeout, begin)
        self.wait_for("\n", timeout, end)
        with self._cond:
            out = self._buf[begin:end - len(f"__DONE_{n}__ ")].decode(errors="replace")
            status = int(self._buf[end:].split()[0])
        return status, out.replace("\r\n", "\n")

    def close(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            if self._log:
                self._log.close()
