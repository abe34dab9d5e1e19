"""Small API objects a client process can export: a local IProgress and IVirtualBoxErrorInfo.

A VM process answering IConsole::powerDown or saveState returns an IProgress that lives in
its own process; LocalProgress is that object (thread-safe, completed by the worker).
"""

from __future__ import annotations

import threading
import uuid

from ..api.errors import VBoxError


class LocalErrorInfo:
    __interface__ = "IVirtualBoxErrorInfo"

    def __init__(self, err: VBoxError):
        self.result_code = err.result_code
        self.result_detail = 0
        self.interface_id = err.interface
        self.component = err.component
        self.text = err.text
        self.next = None


class LocalProgress:
    """IProgress for work done in this process: call complete() (or fail()) when it is over."""

    __interface__ = "IProgress"

    def __init__(self, description: str, cancelable: bool = False, initiator=None):
        self.id = str(uuid.uuid4())
        self.description = description
        self.initiator = initiator
        self.cancelable = cancelable
        self.canceled = False
        self.result_code = 0
        self.error_info = None
        self.operation_count = 1
        self.operation = 0
        self.operation_description = description
        self.operation_weight = 1
        self.timeout = 0
        self._percent = 0
        self._done = threading.Event()

    @property
    def completed(self) -> bool:
        return self._done.is_set()

    @property
    def percent(self) -> int:
        return 100 if self.completed else self._percent

    @property
    def operation_percent(self) -> int:
        return self.percent

    @property
    def time_remaining(self) -> int:
        return 0 if self.completed else -1

    def set_percent(self, percent: int) -> None:
        self._percent = max(0, min(99, int(percent)))

    def complete(self, error: VBoxError | None = None) -> None:
        if error is not None:
            self.result_code = error.result_code
            self.error_info = LocalErrorInfo(error)
        self._done.set()

    def wait_for_completion(self, timeout: int = -1) -> None:
        self._done.wait(None if timeout < 0 else timeout / 1000)

    def wait_for_operation_completion(self, operation: int, timeout: int = -1) -> None:
        self.wait_for_completion(timeout)

    def cancel(self) -> None:
        if self.cancelable:
            self.canceled = True


def completed_progress(description: str, error: VBoxError | None = None) -> LocalProgress:
    p = LocalProgress(description)
    p.complete(error)
    return p


