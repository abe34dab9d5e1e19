"""The CLI's thin glue to the Main API: one connection, failed calls as error blocks.

Every command talks to the service only through `vboxsvc.ipc.client` (DESIGN.md layers).
`call(context)` wraps API calls the way VBoxManage's CHECK_ERROR macros do: a VBoxError
becomes the `error:` / `Details:` / `Context:` block and exit code 1.
"""

from .output import CommandFailed, com_error_block, msg_lines

_MISSING = r"^'(I[A-Z]\w*)' object has no attribute '(\w+)'"
_READONLY = r"^attribute '(\w+)' of (I[A-Z]\w*) is read-only"


class Api:
    """Lazily opened connection shared by one command run."""

    _client = None

    @classmethod
    def client(cls):
        if cls._client is None:
            from vboxsvc.ipc.client import connect

            try:
                cls._client = connect(light=True)
            except Exception as exc:
                if not is_api_error(exc):
                    raise
                # what VBoxManage prints when VBoxSVC cannot be reached
                raise CommandFailed(
                    msg_lines("error: ", "Failed to create the VirtualBox object!") + error_block(exc, "")
                    + msg_lines("error: ", "Most likely, the VirtualBox COM server is not running or failed "
                                           "to start.")) from exc
        return cls._client

    @classmethod
    def vbox(cls):
        return cls.client().virtualbox

    @classmethod
    def session(cls):
        return cls.client().session()

    @classmethod
    def close(cls):
        if cls._client is not None:
            try:
                cls._client.close()
            finally:
                cls._client = None


def is_api_error(exc: BaseException) -> bool:
    return hasattr(exc, "result_code") and hasattr(exc, "text")


def error_block(exc, context: str) -> str:
    """The error block of a VBoxError raised by a call (no Context line when `context` is empty)."""
    return com_error_block(str(getattr(exc, "text", "") or ""), int(exc.result_code),
                           str(getattr(exc, "component", "") or ""),
                           str(getattr(exc, "interface", "") or ""), context)


class call:  # noqa: N801 - used like the contextmanager it replaces: `with call(...):`
    """CHECK_ERROR: API errors inside the block print VirtualBox's error block, exit 1.

    A plain context manager class: contextlib would cost every `vboxmanage` run its import."""

    __slots__ = ("expr", "line", "file")

    def __init__(self, expr: str, line: int, file: str):
        self.expr, self.line, self.file = expr, line, file

    def __enter__(self):
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, CommandFailed) or not isinstance(exc, Exception):
            return False
        where = f'"{self.expr}" at line {self.line} of file {self.file}'
        if isinstance(exc, AttributeError):
            import re

            missing, readonly = re.match(_MISSING, str(exc)), re.match(_READONLY, str(exc))
            if missing:
                iface = missing.group(1)
                text = f"{missing.group(1)}::{missing.group(2)} is not implemented by this vboxsvc"
            elif readonly:
                iface = readonly.group(2)
                text = f"{readonly.group(2)}::{readonly.group(1)} is read-only in this vboxsvc"
            else:
                return False
            # the service's schema lacks this VirtualBox API member (or its setter): report it like E_NOTIMPL
            raise CommandFailed(com_error_block(text, 0x80004001, iface[1:] + "Wrap", iface, where)) from exc
        if not is_api_error(exc):
            return False
        raise CommandFailed(error_block(exc, where)) from exc


LOCK_TYPES = {"Shared": 1, "Write": 2, "VM": 3}  # LockType (VirtualBox.xidl); the service checks the value


def lock_type(name: str) -> int:
    return LOCK_TYPES[name]


class locked:  # noqa: N801 - used like the contextmanager it replaces: `with locked(...) as session:`
    """Lock `machine` with a new session (`kind` = Write or Shared); always unlock."""

    def __init__(self, machine, kind: str, expr: str = "LockMachine(a->session, LockType_Write)",
                 line: int = 0, file: str = "VBoxManage.cpp"):
        self.machine, self.kind, self.expr, self.line, self.file = machine, kind, expr, line, file
        self.session = None

    def __enter__(self):
        session = Api.session()
        with call(self.expr.replace("LockType_Write", f"LockType_{self.kind}"), self.line, self.file):
            self.machine.lock_machine(session, lock_type(self.kind))
        self.session = session
        return session

    def __exit__(self, kind, exc, tb) -> bool:
        try:
            self.session.unlock_machine()
        except Exception:
            pass
        return False


FIND_MACHINE = "FindMachine(Bstr(VMNameOrUuid).raw(), machine.asOutParam())"  # VBoxManage's context


def find_machine(name: str, line: int = 0, file: str = "VBoxManage.cpp"):
    with call(FIND_MACHINE, line, file):
        return Api.vbox().find_machine(name)


def safe_get(obj, name: str, default=""):
    try:
        value = getattr(obj, name)
    except Exception:
        return default
    return default if value is None else value


def error_info_block(info, code: int, context: str) -> str:
    """GluePrintErrorInfo over an IVirtualBoxErrorInfo chain (`--------` between links) + Context."""
    if info is None:
        return com_error_block("", code, "", "", context)
    blocks = []
    seen = 0
    while info is not None and seen < 16:
        iface = str(safe_get(info, "interface_id") or safe_get(info, "interface") or "")
        if not iface.startswith("I"):  # a bare IID tells the user nothing; VBoxManage prints names
            iface = ""
        blocks.append(com_error_block(str(safe_get(info, "text")),
                                      int(safe_get(info, "result_code", code) or code),
                                      str(safe_get(info, "component")), iface, ""))
        info = safe_get(info, "next", None)
        seen += 1
    text = msg_lines("error: ", "--------").join(blocks)
    if context:
        text += msg_lines("error: ", f"Context: {context}")
    return text


def progress_error(progress, human: str, context: str) -> CommandFailed:
    """CHECK_PROGRESS_ERROR: a human line, then the progress's error info block."""
    return CommandFailed(msg_lines("error: ", human)
                         + error_info_block(safe_get(progress, "error_info", None), int(progress.result_code),
                                            context))


def wait(progress, human: str, context: str) -> None:
    """showProgress + CHECK_PROGRESS_ERROR."""
    from .progress import show_progress

    if show_progress(progress) != 0:
        raise progress_error(progress, human, context)
