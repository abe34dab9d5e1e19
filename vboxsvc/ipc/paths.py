"""Where the bus lives: the per-user runtime directory, the endpoint per VirtualBox home, the key.

One service per (user, VirtualBox home). The home is the one VirtualBox itself would use
(VBOX_USER_HOME, ~/.VirtualBox, $XDG_CONFIG_HOME/VirtualBox; root's from the account
database), made canonical (absolute, symlinks resolved): every spelling of one folder, and
the VM process the service starts with VBOX_USER_HOME set to it, meet on one endpoint and
one life lock. The endpoint name is fixed for the account's default home (so a systemd user
socket unit can name it) and carries a hash of the canonical home otherwise.
The runtime directory is `$VBOXPY_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/vboxpy`, else
`/tmp/.vboxpy-<uid>` (VirtualBox uses `/tmp/.vbox-<user>-ipc`); it must be ours and 0700.
"""

from __future__ import annotations

import os
import pwd
import stat

from settings import home as shome

KEY_BYTES = 32
HOME_LOCK_NAME = "vboxsvc.lock"   # in the VirtualBox home: locked by the service that serves it


class BusSetupError(Exception):
    """The runtime directory or key file is unusable (wrong owner, mode, or type)."""


def runtime_dir(create: bool = True) -> str:
    base = os.environ.get("VBOXPY_RUNTIME_DIR")
    if not base:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        base = os.path.join(xdg, "vboxpy") if xdg else f"/tmp/.vboxpy-{os.getuid()}"
    base = os.path.abspath(base)
    if create:
        try:
            os.mkdir(base, 0o700)
        except FileExistsError:
            pass
    _check_private_dir(base)
    return base


def _check_private_dir(path: str) -> None:
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise BusSetupError(f"'{path}' is not a directory")
    if st.st_uid != os.getuid():
        raise BusSetupError(f"'{path}' belongs to uid {st.st_uid}, not to us ({os.getuid()})")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)  # ours but too open: tighten, as VirtualBox does for its ipc dir


def canonical_home() -> str:
    """The VirtualBox home of this process, absolute with symlinks resolved (it need not exist yet)."""
    return os.path.realpath(shome.vbox_user_home(create=False))


def default_home() -> str:
    """The account's default VirtualBox home, canonical: what a service started by systemd for the
    user (account-database HOME, no VBOX_USER_HOME, no XDG_CONFIG_HOME) serves."""
    try:
        home = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return ""
    legacy = os.path.join(home, ".VirtualBox")
    chosen = legacy if os.path.isdir(legacy) else os.path.join(home, ".config", "VirtualBox")
    return os.path.realpath(chosen)


def home_tag(home: str | None = None) -> str:
    """'' for the account's default home, else a short hash of the canonical home."""
    home = canonical_home() if home is None else os.path.realpath(home)
    if home == default_home():
        return ""
    from .wire import sha256  # not needed on the default home's path

    return sha256(home.encode()).hexdigest()[:12]


def _name(stem: str, ext: str) -> str:
    tag = home_tag()
    return f"{stem}-{tag}.{ext}" if tag else f"{stem}.{ext}"


def socket_path() -> str:
    return os.path.join(runtime_dir(), _name("vboxsvc", "sock"))


def endpoint(path: str | None = None) -> str:
    return "ipc://" + (path or socket_path())


def settings_record_path() -> str:
    """The record of the service's last full read of the settings (server/quickstart.py)."""
    return os.path.join(runtime_dir(), _name("vboxsvc", "read.json"))


def spawn_lock_path() -> str:
    """Clients serialize starting the service on this file."""
    return os.path.join(runtime_dir(), _name("vboxsvc", "spawn.lock"))


def life_lock_path() -> str:
    """The running service holds this file locked for its whole life (one service per home)."""
    return os.path.join(runtime_dir(), _name("vboxsvc", "pid"))


def key_path() -> str:
    return os.path.join(runtime_dir(), "bus.key")


def load_key(create: bool) -> bytes:
    """The per-user signing key (0600 file); created atomically if asked and missing."""
    path = key_path()
    try:
        return _read_key(path)
    except FileNotFoundError:
        if not create:
            raise
    tmp = f"{path}.{os.getpid()}.{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, os.urandom(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process won the race: then use theirs
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return _read_key(path)


def _read_key(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
            raise BusSetupError(f"key file '{path}' must belong to us and have mode 0600")
        data = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) != KEY_BYTES:
        raise BusSetupError(f"key file '{path}' is corrupt ({len(data)} bytes)")
    return data


def restore_key(key: bytes) -> None:
    """Put the service's key back if someone removed the file (tmp cleaners)."""
    path = key_path()
    if os.path.exists(path):
        return
    tmp = f"{path}.{os.getpid()}.restore"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
