"""The VirtualBox home folder as a plain string (glue/com.cpp GetVBoxUserHomeDirectory).

Every client resolves the home before its first call (the service's endpoint is named
after it), so this stays free of pathlib and of the settings models; settings.paths
offers the same answers as Paths.
"""

from __future__ import annotations

import os
import pwd


def user_home_dir() -> str:
    """$HOME, except for root, whose home comes from the account database (RTPathUserHome)."""
    if os.geteuid() == 0:
        try:
            return pwd.getpwuid(0).pw_dir
        except KeyError:
            pass
    home = os.environ.get("HOME")
    if home:
        return home
    return pwd.getpwuid(os.geteuid()).pw_dir


def vbox_user_home(create: bool = True) -> str:
    """VBOX_USER_HOME made absolute; else ~/.VirtualBox if it exists; else
    $XDG_CONFIG_HOME/VirtualBox (default ~/.config/VirtualBox), created with mode 0700."""
    env = os.environ.get("VBOX_USER_HOME")
    if env:
        result = os.path.abspath(env)
    else:
        home = user_home_dir()
        xdg = os.environ.get("XDG_CONFIG_HOME") or ".config"
        candidates = [os.path.join(home, ".VirtualBox"), os.path.join(home, xdg, "VirtualBox")]
        result = next((c for c in candidates if os.path.isdir(c)), candidates[-1])
    if create and not os.path.isdir(result):
        try:
            os.makedirs(result, mode=0o700, exist_ok=True)
        except OSError as e:
            from .errors import SettingsError

            raise SettingsError(f"Could not create the VirtualBox home directory '{result}' ({e.strerror})",
                                result) from None
    return result
