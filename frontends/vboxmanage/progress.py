"""VBoxManage's progress display (showProgress in VBoxManageUtils.cpp): `0%...10%...100%` on stderr.

Polls IProgress with waitForCompletion(100); every decade appears exactly once (missed
ones back-filled); failure completes the line with the result code's define name;
SIGINT/SIGTERM cancel a cancelable operation.
"""

import signal
import sys

from .names import result_name


def show_progress(progress, stream=None) -> int:
    """Follow `progress` to completion; returns its result code (0 on success)."""
    stream = stream or sys.stderr
    cancelled = {"asked": False}

    def _cancel(_sig, _frame):
        cancelled["asked"] = True

    old = {}
    try:
        cancelable = bool(progress.cancelable)
    except Exception:
        cancelable = False
    if cancelable:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old[sig] = signal.signal(sig, _cancel)
            except ValueError:  # not the main thread
                pass
    try:
        from .output import State

        if State.detailed_progress:
            return _follow_detailed(progress, stream, cancelled)
        return _follow(progress, stream, cancelled)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _follow(progress, stream, cancelled) -> int:
    stream.write("0%...")
    stream.flush()
    shown = 0  # highest decade already printed
    sent_cancel = False
    while True:
        completed = bool(progress.completed)
        if not completed:
            progress.wait_for_completion(100)
            completed = bool(progress.completed)
        percent = int(progress.percent)
        shown = _print_decades(stream, shown, min(percent, 90))
        if completed:
            break
        if cancelled["asked"] and not sent_cancel:
            sent_cancel = True
            try:
                progress.cancel()
            except Exception:
                pass
    code = int(progress.result_code) & 0xFFFFFFFF
    if code == 0 or code < 0x80000000:
        _print_decades(stream, shown, 90)
        stream.write("100%\n")
        code = 0
    elif bool(progress.canceled):
        stream.write("CANCELED\n")
    else:
        stream.write(f"{result_name(code)}\n")
    stream.flush()
    return code


def _print_decades(stream, shown: int, percent: int) -> int:
    upto = (percent // 10) * 10
    for value in range(shown + 10, upto + 1, 10):
        stream.write(f"{value}%...")
    if upto > shown:
        stream.flush()
        return upto
    return shown



def _follow_detailed(progress, stream, cancelled) -> int:
    """--detailed-progress: one line per change, `(op/count) desc NN% => NN% (N s remaining)`."""
    last = None
    count = max(int(progress.operation_count), 1)
    sent_cancel = False
    while True:
        completed = bool(progress.completed)
        state = (int(progress.operation), progress.operation_description, int(progress.operation_percent),
                 int(progress.percent))
        if state != last:
            last = state
            remaining = int(progress.time_remaining)
            stream.write(f"({state[0] + 1}/{count}) {state[1]} {state[2]:02d}% => {state[3]:02d}% "
                         f"({remaining} s remaining)\n")
            stream.flush()
        if completed:
            break
        progress.wait_for_completion(100)
        if cancelled["asked"] and not sent_cancel:
            sent_cancel = True
            try:
                progress.cancel()
            except Exception:
                pass
    code = int(progress.result_code) & 0xFFFFFFFF
    if code >= 0x80000000:
        stream.write("CANCELED\n" if bool(progress.canceled) else f"Progress state: {result_name(code)}\n")
        return code
    return 0
