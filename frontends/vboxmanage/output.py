"""VBoxManage's message and error formatting (src/VBox/Main/glue/errorprint.cpp) and exit codes
(RTEXITCODE_*).

Commands raise the exceptions below; main() turns them into the exact stderr text and
exit code VBoxManage produces, so every command reports failures the same way.
"""

import sys
import time

from vboxsvc.api import identity

from .names import result_name

PROG = "VBoxManage"


def current_identity() -> identity.Identity:
    """The release this run presents itself as, from this run's environment (VBOXPY_VBOX_VERSION is
    read per command, never at import: a resident command server forks runs from imported code)."""
    return identity.current()


def version_text() -> str:
    """`VBoxManage --version`'s line without its newline."""
    ident = current_identity()
    return f"{ident.version}r{ident.revision}"


def logo() -> str:
    ident = current_identity()
    return (f"Oracle VirtualBox Command Line Management Interface Version {ident.version}\n"
            f"Copyright (C) 2005-{2025 if ident.is_7_1 else 2024} Oracle and/or its affiliates\n")

EXIT_SUCCESS, EXIT_FAILURE, EXIT_SYNTAX = 0, 1, 2


class State:
    """Process-wide flags (set by main from the global options)."""

    nologo = False
    detailed_progress = False
    logo_shown = False


def show_logo(stream) -> None:
    if State.nologo or State.logo_shown:
        return
    State.logo_shown = True
    stream.write(logo() + "\n")


def msg_lines(prefix: str, text: str) -> str:
    """RTMsgError style: every line of `text` gets `VBoxManage: <prefix>`; empty lines stay bare."""
    out = []
    for line in text.split("\n"):
        out.append(f"{PROG}: {prefix}{line}" if line else "")
    return "\n".join(out) + "\n"


def error(text: str) -> None:
    sys.stderr.write(msg_lines("error: ", text))


def warning(text: str) -> None:
    sys.stderr.write(msg_lines("warning: ", text))


class CommandFailed(Exception):
    """A handler failed after printing (or carrying) its error block: exit 1."""

    def __init__(self, text: str = "", code: int = EXIT_FAILURE):
        super().__init__(text)
        self.text = text
        self.code = code


class SyntaxFailure(Exception):
    """errorSyntax: logo, error line, blank line, brief usage of `command`; exit 2."""

    def __init__(self, text: str, command: str | None = None):
        super().__init__(text)
        self.text = text
        self.command = command


class ArgumentFailure(Exception):
    """errorArgument: only the error line; exit 2."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


def com_error_block(text: str, code: int, component: str, interface: str, context: str) -> str:
    """GluePrintErrorInfo + GluePrintErrorContext for a failed API call."""
    details = [f"code {result_name(code)} (0x{code & 0xFFFFFFFF:08x})"]
    if component:
        details.append(f"component {component}")
    if interface:
        details.append(f"interface {interface}")
        details.append("callee nsISupports")
    body = text if text else f"Code {result_name(code)} (extended info not available)"
    block = msg_lines("error: ", body)
    if text:
        block += msg_lines("error: ", "Details: " + ", ".join(details))
    if context:
        block += msg_lines("error: ", f"Context: {context}")
    return block


def rt_time_spec(ms: int) -> str:
    """RTTimeSpecToString of a UTC time in milliseconds: 9 fraction digits, no `Z` (callers with a
    buffer that has room for it add it)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(ms // 1000)) + f"{(ms % 1000) * 1000000:09d}"
