"""The VMDK text descriptor: which extents make up the disk and the disk database (UUIDs,
geometry, adapter). Parsed strictly, since it arrives in downloaded boxes and appliances, and
written in the layout VirtualBox's VMDK.cpp and qemu produce.
"""

from __future__ import annotations

import os
import re
import uuid as uuidlib
from dataclasses import dataclass, field

from vmm.storage.image import DiskImageError

SIGNATURE = "# Disk DescriptorFile"
MAX_TEXT = 1 << 20
MAX_EXTENTS = 4096
NULL_UUID = "00000000-0000-0000-0000-000000000000"
CREATE_TYPES = ("monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat",
                "streamOptimized", "vmfs", "vmfsSparse", "custom")
EXTENT_TYPES = ("SPARSE", "FLAT", "ZERO", "VMFS")
ACCESS = ("RW", "RDONLY", "NOACCESS")
_EXTENT = re.compile(r'^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)(?:\s+"((?:[^"\\]|\\.)*)"(?:\s+(\d+))?)?\s*$')
_KEY = re.compile(r"^([A-Za-z][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$")


@dataclass
class Extent:
    access: str
    sectors: int
    type: str
    filename: str | None
    offset: int = 0         # sectors into the file (FLAT)


@dataclass
class Descriptor:
    version: int = 1
    cid: int = 0xFFFFFFFE
    parent_cid: int = 0xFFFFFFFF
    create_type: str = "monolithicSparse"
    extents: list[Extent] = field(default_factory=list)
    ddb: dict[str, str] = field(default_factory=dict)

    @property
    def capacity(self) -> int:
        return sum(e.sectors for e in self.extents)

    def uuid(self, key: str) -> str | None:
        """ddb.uuid.image/.modification/.parent/.parentmodification, None when absent or null."""
        raw = self.ddb.get(f"ddb.uuid.{key}", "")
        try:
            u = str(uuidlib.UUID(raw))
        except ValueError:
            return None
        return None if u == NULL_UUID else u

    def render(self) -> str:
        out = [SIGNATURE, f"version={self.version}", f"CID={self.cid:08x}",
               f"parentCID={self.parent_cid:08x}",
               f'createType="{self.create_type}"', "", "# Extent description"]
        for e in self.extents:
            line = f"{e.access} {e.sectors} {e.type}"
            if e.type != "ZERO":
                line += f' "{e.filename}"'
                if e.type in ("FLAT", "VMFS"):
                    line += f" {e.offset}"
            out.append(line)
        out += ["", "# The disk Data Base", "#DDB", ""]
        out += [f'{k} = "{v}"' for k, v in self.ddb.items()]
        return "\n".join(out) + "\n"


def parse(text: bytes | str, path: str) -> Descriptor:
    """Parse and validate a descriptor; every problem is a DiskImageError naming the line."""
    if isinstance(text, bytes):
        text = text.split(b"\0", 1)[0]
        if len(text) > MAX_TEXT:
            raise DiskImageError(f"{path}: VMDK: the descriptor is larger than {MAX_TEXT} bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise DiskImageError(f"{path}: VMDK: the descriptor is not UTF-8 text") from None
    d = Descriptor()
    seen_sig = False
    section = "header"
    keys: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            if s.lower().startswith(SIGNATURE.lower()):
                seen_sig = True
            elif s.lower().startswith("#ddb"):
                section = "ddb"
            continue
        m = _EXTENT.match(s)
        if m and section != "ddb":
            if len(d.extents) >= MAX_EXTENTS:
                raise DiskImageError(f"{path}: VMDK: more than {MAX_EXTENTS} extents")
            d.extents.append(_extent(m, path, number))
            section = "extents"
            continue
        m = _KEY.match(s)
        if not m:
            raise DiskImageError(f"{path}: VMDK: descriptor line {number} is not understood: {s[:80]!r}")
        key, value = m.group(1), _unquote(m.group(2))
        if key.startswith("ddb."):
            d.ddb[key] = value
        elif section == "header":
            keys[key] = value
        else:
            raise DiskImageError(f"{path}: VMDK: descriptor line {number}: {key!r} is out of place")
    if not seen_sig and "createType" not in keys:
        raise DiskImageError(f"{path}: VMDK: not a descriptor (no '{SIGNATURE}' line)")
    try:
        d.version = int(keys.get("version", "1"))
        d.cid = int(keys.get("CID", "fffffffe"), 16) & 0xFFFFFFFF
        d.parent_cid = int(keys.get("parentCID", "ffffffff"), 16) & 0xFFFFFFFF
    except ValueError:
        raise DiskImageError(f"{path}: VMDK: invalid version or CID in the descriptor") from None
    if d.version not in (1, 2, 3):
        raise DiskImageError(f"{path}: VMDK: unsupported descriptor version {d.version}")
    d.create_type = keys.get("createType", "")
    if d.create_type not in CREATE_TYPES:
        raise DiskImageError(f"{path}: VMDK: unsupported createType {d.create_type!r}")
    if d.parent_cid != 0xFFFFFFFF or "parentFileNameHint" in keys:
        raise DiskImageError(f"{path}: VMDK: differencing (delta) VMDK images are not supported")
    if not d.extents:
        raise DiskImageError(f"{path}: VMDK: the descriptor lists no extents")
    if d.capacity == 0:
        raise DiskImageError(f"{path}: VMDK: the disk has a size of zero")
    return d


def _unquote(v: str) -> str:
    if len(v) >= 2 and v[0] == v[-1] == '"':
        return v[1:-1]
    return v


def _extent(m: re.Match, path: str, number: int) -> Extent:
    access, sectors, etype, name, offset = m.groups()
    etype = etype.upper()
    if etype not in EXTENT_TYPES:
        raise DiskImageError(f"{path}: VMDK: descriptor line {number}: unsupported extent type {etype!r}")
    sectors = int(sectors)
    if sectors <= 0 or sectors > 1 << 41:
        raise DiskImageError(f"{path}: VMDK: descriptor line {number}: invalid extent size {sectors}")
    if etype != "ZERO":
        if not name:
            raise DiskImageError(f"{path}: VMDK: descriptor line {number}: the extent has no file name")
        if "\0" in name or any(p == ".." for p in re.split(r"[\\/]", name)):
            raise DiskImageError(f"{path}: VMDK: descriptor line {number}: extent file name {name!r} leaves "
                                 "the image's folder")
    elif name:
        raise DiskImageError(f"{path}: VMDK: descriptor line {number}: a ZERO extent has no file")
    if offset is not None and etype not in ("FLAT", "VMFS"):
        raise DiskImageError(f"{path}: VMDK: descriptor line {number}: only flat extents have an offset")
    return Extent(access, sectors, etype, name, int(offset or 0))


def extent_path(descriptor_path: str, name: str) -> str:
    return (name
            if os.path.isabs(name) else os.path.join(os.path.dirname(os.path.abspath(descriptor_path)), name))


def geometry(sectors: int) -> tuple[int, int, int]:
    """The BIOS geometry VirtualBox and qemu record for a disk of this size (C/H/S)."""
    return min(sectors // (16 * 63), 16383), 16, 63


def new_descriptor(
    create_type: str, extents: list[Extent], image_uuid: str, adapter: str = "ide"
) -> Descriptor:
    sectors = sum(e.sectors for e in extents)
    c, h, s = geometry(sectors)
    ddb = {"ddb.virtualHWVersion": "4", "ddb.adapterType": adapter, "ddb.geometry.cylinders": str(c),
           "ddb.geometry.heads": str(h), "ddb.geometry.sectors": str(s), "ddb.uuid.image": image_uuid,
           "ddb.uuid.parent": NULL_UUID, "ddb.uuid.modification": str(uuidlib.uuid4()),
           "ddb.uuid.parentmodification": NULL_UUID}
    return Descriptor(cid=uuidlib.uuid4().int & 0xFFFFFFFF, create_type=create_type, extents=extents, ddb=ddb)
