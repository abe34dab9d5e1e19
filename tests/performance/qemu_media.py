"""Boot the guest builder's media in QEMU (TCG, `-M pc`, Debian's SeaBIOS) and check them.

    python tests/performance/qemu_media.py [--media disk,iso,debian] [--timeout S]

disk and iso: the firmware boots the medium, the menu's default entry reaches the ready marker
and a shell answers on the serial port.  debian: GRUB boots the full Debian disk to a serial
login prompt; the script logs in as vagrant, checks that sshd listens (`ss -ltn`) and that
passwordless sudo works, then connects with ssh and Vagrant's insecure key through a QEMU user
network port forward.  This is also the QEMU side of tests/performance/bench_boot.py's BIOS
forms.  Builds the media if needed (the Debian disk takes minutes the first time).
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from vmm.guest.builder import build, cache_dir  # noqa: E402
from vmm.guest.debian_disk import build_debian_disk, debian_files  # noqa: E402
from vmm.guest.init_script import READY_MARKER  # noqa: E402
from vmm.guest.media import build_boot_media, media_files  # noqa: E402

BIOS = "/usr/share/seabios/bios.bin"
MEMORY_MB = 256
DEBIAN_MEMORY_MB = 512
LOGIN_PROMPT = rb"login: "


def qemu_binary() -> str | None:
    return shutil.which("qemu-system-x86_64")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _disk(path: Path, fmt: str, bus: str) -> list[str]:
    """A disk on PIIX IDE (VirtualBox's default controller) or on an AHCI controller; writes go to
    a temporary overlay, never to the cached image."""
    if bus == "ide":
        return ["-drive", f"file={path},format={fmt},if=ide,snapshot=on"]
    return ["-drive", f"file={path},format={fmt},if=none,id=d0,snapshot=on", "-device", "ahci,id=sata",
            "-device", "ide-hd,drive=d0,bus=sata.0"]


def qemu_command(medium: str, qemu: str, ssh_port: int | None = None, bus: str = "ide") -> list[str]:
    """The QEMU command line booting `medium` (disk, iso, debian) from its cached image; disks on
    `bus` (ide or ahci)."""
    d = cache_dir()
    cmd = [qemu, "-accel", "tcg", "-M", "pc", "-bios", BIOS, "-nographic", "-no-reboot",
           "-m", str(DEBIAN_MEMORY_MB if medium == "debian" else MEMORY_MB)]
    if medium == "disk":
        cmd += _disk(media_files(d).disk_vdi, "vdi", bus) + ["-boot", "c"]
    elif medium == "iso":
        cmd += ["-cdrom", str(media_files(d).iso), "-boot", "d"]
    elif medium == "debian":
        cmd += _disk(debian_files(d).raw, "raw", bus) + ["-boot", "c"]
        if ssh_port:
            cmd += ["-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
                    "-device", "e1000,netdev=n0"]
        else:
            cmd += ["-nic", "none"]
    else:
        raise ValueError(medium)
    if medium != "debian":
        cmd += ["-nic", "none"]
    return cmd


class Console:
    """The guest's serial port as QEMU's stdio: wait for patterns, type lines."""

    def __init__(self, cmd: list[str]):
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        self.buf = b""
        self.mark = 0

    def expect(self, pattern: bytes, timeout: float) -> re.Match | None:
        """The first match of `pattern` in output not yet consumed by an earlier expect."""
        end = time.monotonic() + timeout
        while True:
            m = re.compile(pattern).search(self.buf, self.mark)
            if m:
                self.mark = m.end()
                return m
            left = end - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.p.stdout], [], [], min(left, 0.2))
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    return None
                self.buf += chunk

    def send(self, line: str) -> None:
        self.p.stdin.write(line.encode() + b"\r")
        self.p.stdin.flush()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()

    def tail(self, n: int = 600) -> str:
        return self.buf[-n:].decode("utf-8", "replace")


def check_busybox(medium: str, qemu: str, timeout: float) -> dict:
    """disk/iso: seconds to the ready marker; the shell runs a command."""
    con = Console(qemu_command(medium, qemu))
    res = {"medium": medium}
    try:
        if not con.expect(READY_MARKER.encode(), timeout):
            res["error"] = f"no ready marker in {timeout:.0f} s: {con.tail()!r}"
            return res
        res["ready_s"] = con.elapsed()
        con.expect(rb"# ", 30)
        time.sleep(0.5)
        con.send("echo shell-$((6*7)); cat /proc/cmdline")
        res["shell"] = bool(con.expect(rb"shell-42", 30))
        m = con.expect(rb"(console=[^\r\n]*)", 10)
        res["cmdline"] = m.group(1).decode() if m else ""
        con.send("poweroff")
        con.p.wait(30)
    except (OSError, subprocess.TimeoutExpired):
        pass
    finally:
        con.close()
    return res


def ssh_command(port: int, key: Path, remote: str) -> list[str]:
    return ["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR", "vagrant@127.0.0.1", remote]


def check_debian(qemu: str, timeout: float, ssh: bool = True) -> dict:
    """Login prompt on the serial port, log in, sshd listening, sudo, ssh with the insecure key."""
    files = debian_files(cache_dir())
    port = free_port() if ssh else None
    con = Console(qemu_command("debian", qemu, port))
    res = {"medium": "debian"}
    try:
        if not con.expect(LOGIN_PROMPT, timeout):
            res["error"] = f"no login prompt in {timeout:.0f} s: {con.tail()!r}"
            return res
        res["login_prompt_s"] = con.elapsed()
        con.send("vagrant")
        con.expect(rb"Password: ", 60)
        con.send("vagrant")
        if not con.expect(rb"\$ ", 120):
            res["error"] = f"login as vagrant failed: {con.tail()!r}"
            return res
        # sshd may still be starting when getty is: wait for the listening socket.
        con.send("for i in $(seq 60); do ss -ltn | grep -q ':22 ' && break; sleep 1; done; "
                 "ss -ltn | grep -c ':22 ' | sed 's/^/sshd-sockets=/'")
        m = con.expect(rb"sshd-sockets=(\d+)", 120)
        res["sshd_listens"] = bool(m and int(m.group(1)) > 0)
        con.send("sudo -n id -u | sed 's/^/sudo-uid=/'")
        m = con.expect(rb"sudo-uid=(\d+)", 60)
        res["sudo"] = bool(m and m.group(1) == b"0")
        if ssh:
            r = None
            for _ in range(10):
                r = subprocess.run(ssh_command(port, files.private_key, "echo ssh-$((6*7)) $(id -un)"),
                                   capture_output=True, text=True, timeout=120)
                if "ssh-42 vagrant" in r.stdout:
                    break
                time.sleep(3)
            res["ssh"] = bool(r and "ssh-42 vagrant" in r.stdout)
            if not res["ssh"] and r is not None:
                res["ssh_error"] = r.stderr.strip()[-300:]
        con.send("sudo -n poweroff")
        con.p.wait(120)
    except (OSError, subprocess.TimeoutExpired):
        pass
    finally:
        con.close()
    return res


def ensure_media(kinds: set[str]) -> None:
    files = build(log=lambda *_: None)
    if kinds & {"disk", "iso"}:
        build_boot_media(cache_dir(), files.vmlinuz, files.initrd, kinds & {"disk", "iso"},
                         log=lambda *_: None)
    if "debian" in kinds:
        build_debian_disk(cache_dir(), log=print)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--media", default="disk,iso,debian")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--no-ssh", action="store_true")
    args = ap.parse_args()
    qemu = qemu_binary()
    if not qemu:
        print("qemu-system-x86_64 is not installed", file=sys.stderr)
        return 2
    kinds = {k for k in args.media.split(",") if k}
    ensure_media(kinds)
    ok = True
    for kind in ("disk", "iso", "debian"):
        if kind not in kinds:
            continue
        if kind == "debian":
            r = check_debian(qemu, args.timeout, ssh=not args.no_ssh)
            good = r.get("sshd_listens") and r.get("sudo") and (args.no_ssh or r.get("ssh"))
        else:
            r = check_busybox(kind, qemu, args.timeout)
            good = r.get("shell")
        ok = ok and bool(good)
        print(("PASS " if good else "FAIL ") + " ".join(f"{k}={v}" for k, v in r.items()), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
