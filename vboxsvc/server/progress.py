"""IProgress and IVirtualBoxErrorInfo: long operations report progress and end with a result.

Work runs in a worker thread (`run_in_thread`) or is completed by events (the VM process
reaching Running); the bus thread is never blocked. `wait_for_completion` answers when the
operation completes or its timeout passes, without holding up other clients.
"""

from __future__ import annotations

import logging
import threading
import uuid

from ..api import errors as rc
from ..api.enums import VBoxEventType
from ..api.errors import VBoxError
from ..ipc.dispatcher import Deferred
from .context import ctx

log = logging.getLogger("vboxsvc.progress")

MAX_KEPT = 500  # completed progress objects kept for find_progress_by_id


class ErrorInfo:
    __interface__ = "IVirtualBoxErrorInfo"

    def __init__(self, err: VBoxError, next_info: ErrorInfo | None = None):
        self.result_code = err.result_code
        self.result_detail = 0
        self.interface_id = err.interface
        self.component = err.component
        self.text = err.text
        self.next = next_info


class Progress:
    """One long operation: weighted operations, percent, completion, cancel, result and error info."""

    __interface__ = "IProgress"
    __component__ = "ProgressWrap"
    registry: dict[str, Progress] = {}
    _order: list[str] = []

    def __init__(self, description: str, initiator=None, cancelable: bool = False,
                 operations: list[tuple[str, int]] | None = None):
        self.id = str(uuid.uuid4())
        self.description = description
        self.initiator = initiator
        self.cancelable = cancelable
        self._ops = operations or [(description, 1)]
        self.operation_count = len(self._ops)
        self.operation = 0
        self.operation_percent = 0
        self.completed = False
        self.canceled = False
        self.result_code = 0
        self.error_info = None
        self.timeout = 0
        self._waiters: list[Deferred] = []
        self._cancel_hooks = []
        self._lock = threading.Lock()
        Progress.registry[self.id] = self
        Progress._order.append(self.id)
        self._prune()

    @classmethod
    def _prune(cls) -> None:
        while len(cls._order) > MAX_KEPT:
            old = cls.registry.get(cls._order[0])
            if old is not None and not old.completed:
                break
            cls.registry.pop(cls._order.pop(0), None)
            if old is not None and ctx.bus is not None:
                ctx.bus.table.drop(old)

    # --- attributes -------------------------------------------------------------------
    @property
    def percent(self) -> int:
        if self.completed:
            return 100
        total = sum(w for _, w in self._ops)
        done = sum(w for _, w in self._ops[: self.operation])
        cur = (self._ops[self.operation][1] * self.operation_percent / 100
               if self.operation < len(self._ops) else 0)
        return min(99, int((done + cur) * 100 / total))

    @property
    def time_remaining(self) -> int:
        return 0 if self.completed else -1

    @property
    def operation_description(self) -> str:
        return self._ops[min(self.operation, len(self._ops) - 1)][0]

    @property
    def operation_weight(self) -> int:
        return self._ops[min(self.operation, len(self._ops) - 1)][1]

    # --- methods ----------------------------------------------------------------------
    def wait_for_completion(self, timeout: int = -1):
        if self.completed:
            return None
        if timeout == 0:
            return None
        d = Deferred()
        self._waiters.append(d)
        if timeout > 0:
            ctx.call_later(timeout / 1000, lambda: d.resolve(None))
        return d

    def wait_for_operation_completion(self, operation: int, timeout: int = -1):
        if operation < 0 or operation >= self.operation_count:
            raise VBoxError(rc.E_INVALIDARG,
                            f"Operation number must be in range [0, {self.operation_count - 1}]")
        return self.wait_for_completion(timeout)

    def cancel(self) -> None:
        if not self.cancelable:
            raise VBoxError(rc.VBOX_E_INVALID_OBJECT_STATE, "Operation cannot be canceled")
        if self.completed or self.canceled:
            return
        self.canceled = True
        for hook in self._cancel_hooks:
            try:
                hook()
            except Exception:
                log.exception("cancel hook failed")

    # --- for the service --------------------------------------------------------------
    def on_cancel(self, hook) -> None:
        self._cancel_hooks.append(hook)

    def set_operation(self, index: int, percent: int = 0) -> None:
        self.operation = max(0, min(index, self.operation_count - 1))
        self.operation_percent = max(0, min(100, percent))

    def set_percent(self, percent: int) -> None:
        """Percent of the current operation (any thread)."""
        self.operation_percent = max(0, min(100, int(percent)))

    def complete(self, error: VBoxError | None = None) -> None:
        """Finish (bus thread). With an error: result code and error info set."""
        if self.completed:
            return
        if error is None and self.canceled:
            error = VBoxError(rc.E_FAIL, "Operation was canceled", "IProgress", "ProgressWrap")
        if error is not None:
            self.result_code = error.result_code
            self.error_info = ErrorInfo(error)
        self.operation = self.operation_count - 1
        self.operation_percent = 100
        self.completed = True
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.resolve(None)
        ctx.fire(VBoxEventType.OnProgressTaskCompleted, progress_id=self.id,
                 midl_does_not_like_empty_interfaces=False)


def run_in_thread(progress: Progress, work, on_done=None) -> Progress:
    """Run `work(progress)` in a thread; complete the progress on the bus thread afterwards.

    `on_done(result, error)` runs on the bus thread before completion (to update registries).
    """
    def body():
        result, err = None, None
        try:
            result = work(progress)
        except VBoxError as e:
            err = e
        except Exception as e:  # never let a worker die silently
            log.exception("operation %r failed", progress.description)
            err = VBoxError(rc.E_FAIL, f"{progress.description}: {type(e).__name__}: {e}")

        def finish():
            nonlocal err
            if on_done is not None:
                try:
                    on_done(result, err)
                except VBoxError as e:
                    err = err or e
                except Exception as e:
                    log.exception("completion of %r failed", progress.description)
                    err = err or VBoxError(rc.E_FAIL, str(e))
            progress.complete(err)
        ctx.post(finish)

    threading.Thread(target=body, name=f"op-{progress.description[:20]}", daemon=True).start()
    return progress
