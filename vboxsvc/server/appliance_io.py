"""Where an appliance's files live: a folder (an .ovf beside its disks) or an OVA (a tar holding
the .ovf first, then its disks and an optional manifest). Reading checks the manifest's SHA1 or
SHA256 digests; writing produces the folder or the tar, with a manifest if asked.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile

from .appliance_ovf import fail

_MF_LINE = re.compile(r"^(SHA1|SHA256|SHA512)\s*\((.+)\)\s*=\s*([0-9a-fA-F]+)\s*$")
_CHUNK = 1 << 20


class ApplianceSource:
    """Read access to the files of an OVF folder or an OVA, by plain file name."""

    def __init__(self, path: str):
        self.path = path
        self.ova = None
        if not os.path.isfile(path):
            raise fail(f"Could not open the file '{path}' (VERR_FILE_NOT_FOUND)")
        if tarfile.is_tarfile(path) and not path.lower().endswith(".ovf"):
            try:
                self.ova = tarfile.open(path, "r:")
            except (tarfile.TarError, OSError) as e:
                raise fail(f"Could not open the OVA file '{path}' ({e})") from None
            members = {}
            for m in self.ova.getmembers():
                name = m.name[2:] if m.name.startswith("./") else m.name
                if not m.isfile():
                    continue
                if "/" in name or name in ("", ".", ".."):
                    raise fail(f"The OVA file '{path}' contains the file '{m.name}' in a sub-folder")
                members[name] = m
            self._members = members
            ovfs = [n for n in members if n.lower().endswith(".ovf")]
            if not ovfs:
                raise fail(f"The OVA file '{path}' contains no OVF descriptor (.ovf)")
            self.descriptor_name = ovfs[0]
        else:
            self._dir = os.path.dirname(os.path.abspath(path))
            self.descriptor_name = os.path.basename(path)

    def close(self) -> None:
        if self.ova is not None:
            self.ova.close()
            self.ova = None

    def exists(self, name: str) -> bool:
        if self.ova is not None:
            return name in self._members
        return os.path.isfile(os.path.join(self._dir, name))

    def size(self, name: str) -> int:
        if self.ova is not None:
            return self._members[name].size
        return os.path.getsize(os.path.join(self._dir, name))

    def open(self, name: str):
        if self.ova is not None:
            m = self._members.get(name)
            if m is None:
                raise fail(f"The OVA file '{self.path}' does not contain the file '{name}'")
            return self.ova.extractfile(m)
        try:
            return open(os.path.join(self._dir, name), "rb")
        except OSError as e:
            raise fail(f"Could not open the file '{os.path.join(self._dir, name)}' ({e.strerror})") from None

    def read(self, name: str, limit: int) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise fail(f"The file '{name}' of the appliance '{self.path}' is too large")
        return data

    def member_span(self, name: str) -> tuple[int, int] | None:
        """(offset, length) of an OVA member stored contiguously (plain tar members are), or None."""
        m = self._members.get(name) if self.ova is not None else None
        if m is None or m.issparse():
            return None
        return m.offset_data, m.size

    def local_path(self, name: str) -> str | None:
        """A path to read the file in place (OVF folders), or None (inside an OVA)."""
        return None if self.ova is not None else os.path.join(self._dir, name)

    def extract(self, name: str, dest: str, report=None) -> None:
        with self.open(name) as src, open(dest, "wb") as out:
            copied = 0
            while True:
                chunk = src.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                copied += len(chunk)
                if report:
                    report(copied)

    def manifest_name(self) -> str | None:
        name = os.path.splitext(self.descriptor_name)[0] + ".mf"
        return name if self.exists(name) else None

    def verify_manifest(self) -> list[str]:
        """Check every digest the manifest lists; returns the names it covers (none: no manifest)."""
        mf = self.manifest_name()
        if mf is None:
            return []
        try:
            text = self.read(mf, 1 << 20).decode("utf-8")
        except UnicodeDecodeError:
            raise fail(f"The manifest '{mf}' of '{self.path}' is not text") from None
        covered = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            m = _MF_LINE.match(line.strip())
            if m is None:
                raise fail(f"Line {number} of the manifest '{mf}' of '{self.path}' is not understood: "
                           f"'{line[:80]}'")
            algo, name, digest = m.group(1), m.group(2), m.group(3).lower()
            if not self.exists(name):
                raise fail(f"The manifest '{mf}' lists the file '{name}', which is not part of '{self.path}'")
            h = hashlib.new(algo.lower())
            with self.open(name) as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
            if h.hexdigest() != digest:
                raise fail(f"The {algo} digest of '{name}' does not match the one in the manifest '{mf}' "
                           f"(the appliance '{self.path}' is damaged or was changed)")
            covered.append(name)
        return covered


def file_digest(path: str, algo: str) -> str:
    h = hashlib.new(algo.lower())
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(path: str, files: list[tuple[str, str]], algo: str) -> None:
    """files: (name in the manifest, path to read)."""
    lines = [f"{algo}({name})= {file_digest(p, algo)}\n" for name, p in files]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(lines)


def write_ova(path: str, files: list[tuple[str, str]]) -> None:
    """A tar in OVA order (the descriptor first) under a temporary name, renamed when complete."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with tarfile.open(tmp, "w:", format=tarfile.USTAR_FORMAT) as tar:
            for name, p in files:
                info = tar.gettarinfo(p, arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = "someone"
                info.mode = 0o644
                with open(p, "rb") as f:
                    tar.addfile(info, f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_quietly(paths) -> None:
    for p in paths:
        try:
            if os.path.isdir(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)
        except OSError:
            pass
