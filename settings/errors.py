"""The one error type of the settings layer.

VirtualBox reports every problem with a settings file as "Error in <file> (line N) -- <problem>"
(`ConfigFileError` in Settings.cpp); the service turns it into VBOX_E_XML_ERROR / E_FAIL. Keeping
path, line and problem separate lets callers format it themselves while `str()` gives
VirtualBox's wording.
"""

from __future__ import annotations

from pathlib import Path


class SettingsError(Exception):
    """A settings file could not be read, understood or written.

    `path` and `line` are None when the problem is not tied to a file or a line;
    `problem` is the bare description, `str(err)` the full VirtualBox-style message.
    """

    def __init__(self, problem: str, path: str | Path | None = None, line: int | None = None,
                 message: str | None = None):
        self.problem = problem
        self.path = str(path) if path is not None else None
        self.line = line
        if message is None:
            if self.path is None:
                message = problem
            else:
                where = f" (line {line})" if line else ""
                message = f"Error in {self.path}{where} -- {problem}"
        self.message = message
        super().__init__(message)
