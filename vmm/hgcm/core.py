"""HGCM in the VM process: the registry of services, the connected clients and the worker
thread on which service calls run, so a slow host operation never stalls the vCPU.

VMMDev hands over decoded requests (`connect`, `disconnect`, `call`) with a completion
callback; the worker runs them in order and calls back with the VERR_*/VINF_* result.
A service is any object with `connect(client_id) -> rc`, `disconnect(client_id)` and
`call(client_id, function, parms) -> rc` (parms: vmm.devices.hgcm_params.HgcmParm).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Protocol

from vmm.devices import vmmdev_types as T

log = logging.getLogger("vboxpy.hgcm")

MAX_CLIENTS = 4096


class HgcmService(Protocol):
    def connect(self, client_id: int) -> int: ...
    def disconnect(self, client_id: int) -> None: ...
    def call(self, client_id: int, function: int, parms: list) -> int: ...


class Hgcm:
    """Services by name; `threaded=False` runs every job at once on the caller (tests)."""

    def __init__(self, threaded: bool = True):
        self.services: dict[str, HgcmService] = {}
        self.clients: dict[int, HgcmService] = {}
        self._next_client = 1
        self._jobs: queue.SimpleQueue | None = queue.SimpleQueue() if threaded else None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def register(self, name: str, service: HgcmService) -> None:
        self.services[name] = service

    # --- jobs --------------------------------------------------------------------------------------
    def _submit(self, job: Callable[[], None]) -> None:
        if self._jobs is None:
            job()
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._worker, name="hgcm", daemon=True)
                self._thread.start()
        self._jobs.put(job)

    def _worker(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:                       # a service bug must not end the worker
                log.exception("HGCM: job failed")

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            thread.join(5)

    # --- requests (called on the device thread, complete through `done`) --------------------------
    def connect(self, name: str, done: Callable[[int, int], None]) -> None:
        def job():
            service = self.services.get(name)
            if service is None:
                done(T.VERR_HGCM_SERVICE_NOT_FOUND, 0)
                return
            if len(self.clients) >= MAX_CLIENTS:
                done(T.VERR_NO_MEMORY, 0)
                return
            cid = self._next_client
            self._next_client = cid % 0xFFFF_FFFE + 1
            rc = service.connect(cid)
            if rc >= 0:
                self.clients[cid] = service
            done(rc, cid if rc >= 0 else 0)
        self._submit(job)

    def disconnect(self, client_id: int, done: Callable[[int], None]) -> None:
        def job():
            service = self.clients.pop(client_id, None)
            if service is None:
                done(T.VERR_HGCM_INVALID_CLIENT_ID)
                return
            service.disconnect(client_id)
            done(T.VINF_SUCCESS)
        self._submit(job)

    def call(self, client_id: int, function: int, parms: list, done: Callable[[int], None]) -> None:
        def job():
            service = self.clients.get(client_id)
            if service is None:
                done(T.VERR_HGCM_INVALID_CLIENT_ID)
                return
            try:
                rc = service.call(client_id, function, parms)
            except Exception:                       # a service bug fails the call, not the guest's wait
                log.exception("HGCM: function %d of client %d failed", function, client_id)
                rc = T.VERR_HGCM_INTERNAL
            done(rc)
        self._submit(job)

    def disconnect_all(self) -> None:
        """Guest reset: every client goes (VirtualBox drops HGCM clients on reset)."""
        def job():
            for cid, service in list(self.clients.items()):
                service.disconnect(cid)
            self.clients.clear()
        self._submit(job)
