"""VBoxSharedFolders: what vboxsf does (map, create/lookup, read, write, list, info, remove, rename,
symlinks) against a temporary host folder, and the confinement of hostile paths."""

import os
import struct

import pytest

from vmm.devices import vmmdev_types as T
from vmm.devices.hgcm_params import HgcmParm
from vmm.hgcm import shfl_types as S
from vmm.hgcm.shfl_host import (
    VERR_FILE_NOT_FOUND,
    VERR_INVALID_NAME,
    VERR_NO_MORE_FILES,
    VERR_WRITE_PROTECT,
)
from vmm.hgcm.shfl_service import SharedFolderSpec, SharedFoldersService

CID = 7


def u32(v=0):
    return HgcmParm(T.PARM_32BIT, value=v)


def u64(v=0):
    return HgcmParm(T.PARM_64BIT, value=v)


def buf(data=b"", size=None):
    b = bytearray(data) if size is None else bytearray(data.ljust(size, b"\0"))
    return HgcmParm(T.PARM_PAGELIST, data=b, direction=T.DIR_BOTH, size=len(b))


def sstr(text):
    raw = text.encode()
    return buf(struct.pack("<HH", len(raw) + 1, len(raw)) + raw + b"\0")


class Guest:
    """vboxsf's side of the conversation, one call per method."""

    def __init__(self, svc, share="share"):
        self.svc = svc
        assert svc.connect(CID) == 0
        assert svc.call(CID, S.FN_SET_UTF8, []) == 0
        assert svc.call(CID, S.FN_SET_SYMLINKS, []) == 0
        p = [sstr(share), u32(), u32(ord("/")), u32(1)]
        self.map_rc = svc.call(CID, S.FN_MAP_FOLDER, p)
        self.root = p[1].value

    def create(self, path, flags, mode=0):
        cp = bytearray(S.CREATEPARMS_SIZE)
        struct.pack_into("<QII", cp, 0, S.HANDLE_NIL, 0, flags)
        struct.pack_into("<I", cp, 16 + 48, mode)
        p = [u32(self.root), sstr(path), buf(cp)]
        rc = self.svc.call(CID, S.FN_CREATE, p)
        handle, result = struct.unpack_from("<QI", p[2].data, 0)
        size = struct.unpack_from("<q", p[2].data, 16)[0]
        mode = struct.unpack_from("<I", p[2].data, 16 + 48)[0]
        return rc, result, handle, size, mode

    def open(self, path, flags=S.CF_ACCESS_READ | S.CF_ACT_FAIL_IF_NEW):
        rc, result, handle, _, _ = self.create(path, flags)
        assert rc == 0 and handle != S.HANDLE_NIL, (rc, result)
        return handle

    def close(self, h):
        return self.svc.call(CID, S.FN_CLOSE, [u32(self.root), u64(h)])

    def read(self, h, off, n):
        p = [u32(self.root), u64(h), u64(off), u32(n), buf(size=n)]
        rc = self.svc.call(CID, S.FN_READ, p)
        return rc, bytes(p[4].data[:p[3].value])

    def write(self, h, off, data):
        p = [u32(self.root), u64(h), u64(off), u32(len(data)), buf(data)]
        return self.svc.call(CID, S.FN_WRITE, p), p[3].value

    def list(self, h, size=16384):
        names, rc = [], 0
        while True:
            p = [u32(self.root), u64(h), u32(0), u32(size), buf(), buf(size=size), u32(0), u32()]
            rc = self.svc.call(CID, S.FN_LIST, p)
            if rc < 0:
                break
            data, pos = bytes(p[5].data[:p[3].value]), 0
            for _ in range(p[7].value):
                ssize, slen = struct.unpack_from("<HH", data, pos + S.DIRINFO_FIXED - 4)
                names.append(data[pos + S.DIRINFO_FIXED:pos + S.DIRINFO_FIXED + slen].decode())
                pos += S.DIRINFO_FIXED + ssize
        return rc, names

    def info(self, h, flags, data=b"", size=S.FSOBJINFO_SIZE):
        p = [u32(self.root), u64(h), u32(flags), u32(size), buf(data, size)]
        return self.svc.call(CID, S.FN_INFORMATION, p), bytes(p[4].data[:p[3].value])

    def remove(self, path, flags):
        return self.svc.call(CID, S.FN_REMOVE, [u32(self.root), sstr(path), u32(flags)])

    def rename(self, src, dst, flags=S.RENAME_FILE | S.RENAME_REPLACE_IF_EXISTS):
        return self.svc.call(CID, S.FN_RENAME, [u32(self.root), sstr(src), sstr(dst), u32(flags)])


@pytest.fixture
def host(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "hello.txt").write_text("hello from the host\n")
    (tmp_path / "secret").write_text("outside")
    return share


def service(host, **kw):
    return SharedFoldersService([SharedFolderSpec("share", str(host), **kw)])


def test_map_unknown_and_known(host):
    svc = service(host)
    assert Guest(svc, "nope").map_rc == VERR_FILE_NOT_FOUND
    g = Guest(svc, "SHARE")                    # names compare case-insensitively
    assert g.map_rc == 0 and g.root == 0


def test_read_write_create_mkdir_rename_remove(host):
    g = Guest(service(host))
    rc, result, _, size, mode = g.create("/hello.txt", S.CF_LOOKUP | S.CF_ACT_FAIL_IF_NEW)
    assert (rc, result, size) == (0, S.FILE_EXISTS, 20) and mode & 0o170000 == 0o100000
    assert g.create("/missing", S.CF_LOOKUP)[1] == S.FILE_NOT_FOUND
    assert g.create("/nodir/missing", S.CF_LOOKUP)[1] == S.PATH_NOT_FOUND
    h = g.open("/hello.txt")
    assert g.read(h, 6, 100) == (0, b"from the host\n")
    assert g.close(h) == 0 and g.close(h) == T.VERR_INVALID_HANDLE
    rc, result, h, _, _ = g.create("/new.txt", S.CF_ACT_CREATE_IF_NEW | S.CF_ACT_FAIL_IF_EXISTS
                                   | S.CF_ACCESS_READWRITE, 0o644)
    assert (rc, result) == (0, S.FILE_CREATED)
    assert g.write(h, 0, b"written by the guest") == (0, 20)
    g.close(h)
    assert (host / "new.txt").read_bytes() == b"written by the guest"
    assert oct((host / "new.txt").stat().st_mode & 0o777) == oct(0o644)
    rc, result, h, _, _ = g.create("/dir", S.CF_DIRECTORY | S.CF_ACT_FAIL_IF_EXISTS | S.CF_ACCESS_READ, 0o755)
    assert (rc, result) == (0, S.FILE_CREATED) and (host / "dir").is_dir()
    g.close(h)
    assert g.rename("/new.txt", "/dir/moved.txt") == 0 and (host / "dir" / "moved.txt").exists()
    assert g.remove("/dir", S.REMOVE_DIR) < 0                       # not empty
    assert g.remove("/dir/moved.txt", S.REMOVE_FILE) == 0
    assert g.remove("/dir", S.REMOVE_DIR) == 0 and not (host / "dir").exists()


def test_append_and_truncate(host):
    g = Guest(service(host))
    h = g.open("/hello.txt", S.CF_ACCESS_WRITE | S.CF_ACCESS_APPEND | S.CF_ACT_FAIL_IF_NEW)
    (host / "hello.txt").open("a").write("host line\n")            # the host appends meanwhile
    assert g.write(h, 0, b"guest line\n") == (0, 11)
    assert (host / "hello.txt").read_text() == "hello from the host\nhost line\nguest line\n"
    g.close(h)
    h = g.open("/hello.txt", S.CF_ACCESS_WRITE | S.CF_ACT_FAIL_IF_NEW)
    rc, info = g.info(h, S.INFO_SET | S.INFO_SIZE, struct.pack("<q", 5))
    assert rc == 0 and struct.unpack_from("<q", info)[0] == 5 and (host / "hello.txt").read_text() == "hello"
    rc, info = g.info(h, S.INFO_FILE)
    assert rc == 0 and len(info) == S.FSOBJINFO_SIZE
    rc, vol = g.info(h, S.INFO_VOLUME, size=S.VOLINFO_SIZE)
    assert rc == 0 and len(vol) == S.VOLINFO_SIZE


def test_list_many_files(host):
    d = host / "many"
    d.mkdir()
    for i in range(3000):
        (d / f"f{i:05d}").write_bytes(b"")
    g = Guest(service(host))
    h = g.open("/many", S.CF_DIRECTORY | S.CF_ACCESS_READ | S.CF_ACT_FAIL_IF_NEW)
    rc, names = g.list(h)
    assert rc == VERR_NO_MORE_FILES
    assert names[:2] == [".", ".."] and len(names) == 3002 and names[-1] == "f02999"


def test_read_only_share(host):
    g = Guest(service(host, writable=False))
    assert g.open("/hello.txt")                                          # reading is fine
    assert g.create("/hello.txt", S.CF_ACCESS_WRITE | S.CF_ACT_FAIL_IF_NEW)[0] == VERR_WRITE_PROTECT
    assert g.create("/x", S.CF_ACT_CREATE_IF_NEW | S.CF_ACCESS_WRITE)[0] == VERR_WRITE_PROTECT
    assert g.remove("/hello.txt", S.REMOVE_FILE) == VERR_WRITE_PROTECT
    assert g.rename("/hello.txt", "/y") == VERR_WRITE_PROTECT
    assert (host / "hello.txt").exists() and not (host / "x").exists()


def test_escapes(host, tmp_path):
    os.symlink("../secret", host / "link")
    os.symlink(str(tmp_path), host / "up")
    g = Guest(service(host))
    assert g.create("/../secret", S.CF_LOOKUP)[0] == VERR_INVALID_NAME
    assert g.create("/a/../../secret", S.CF_ACCESS_READ)[0] == VERR_INVALID_NAME
    assert g.create("/link", S.CF_ACCESS_READ | S.CF_ACT_FAIL_IF_NEW)[0] == T.VERR_ACCESS_DENIED
    assert g.create("/up/secret", S.CF_ACCESS_READ | S.CF_ACT_FAIL_IF_NEW)[0] == T.VERR_ACCESS_DENIED
    assert g.create("/up/evil", S.CF_ACT_CREATE_IF_NEW | S.CF_ACCESS_WRITE)[0] == T.VERR_ACCESS_DENIED
    assert not (tmp_path / "evil").exists()
    # a symlink is seen as one (the guest resolves it in its own namespace), its target readable
    rc, result, _, _, mode = g.create("/link", S.CF_LOOKUP)
    assert rc == 0 and result == S.FILE_EXISTS and mode & 0o170000 == 0o120000
    p = [u32(g.root), sstr("/link"), buf(size=256)]
    assert g.svc.call(CID, S.FN_READLINK, p) == 0 and bytes(p[2].data).startswith(b"../secret\0")
    # creating symlinks: refused (EROFS in the guest) unless the share allows them
    info = buf(size=S.FSOBJINFO_SIZE)
    assert g.svc.call(CID, S.FN_SYMLINK, [u32(g.root), sstr("/l2"), sstr("hello.txt"), info]) == \
        VERR_WRITE_PROTECT
    g2 = Guest(service(host, symlinks=True))
    assert g2.svc.call(CID, S.FN_SYMLINK, [u32(g2.root), sstr("/l2"), sstr("hello.txt"), info]) == 0
    assert os.readlink(host / "l2") == "hello.txt"


@pytest.mark.parametrize("raw",
                         [b"", b"\x10\x00\x20\x00abc", b"\xff\xff\x01\x00a", b"\x04\x00\x02\x00\xff\xfe\0\0"])
def test_hostile_strings_and_parms(host, raw):
    g = Guest(service(host))
    p = [u32(g.root), buf(raw), buf(size=S.CREATEPARMS_SIZE)]
    assert g.svc.call(CID, S.FN_CREATE, p) in (T.VERR_INVALID_PARAMETER, 0)
    assert g.svc.call(CID, S.FN_CREATE, [u32(g.root), sstr("/x")]) == T.VERR_INVALID_PARAMETER
    assert g.svc.call(CID, S.FN_CREATE, [u32(99), sstr("/x"), buf(size=S.CREATEPARMS_SIZE)]) == \
        T.VERR_INVALID_PARAMETER
    assert (g.svc.call(CID, S.FN_READ, [u64(0), u64(1), u64(0), u32(1), buf(size=1)])
            == T.VERR_INVALID_PARAMETER)
    assert g.svc.call(CID, S.FN_CLOSE, [u32(g.root), u64(12345)]) == T.VERR_INVALID_HANDLE
    assert g.svc.call(CID, 99, []) == T.VERR_NOT_IMPLEMENTED


def test_transient_share_change_keeps_roots(host, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    svc = service(host)
    g = Guest(svc)
    svc.set_folders([SharedFolderSpec("share", str(host)), SharedFolderSpec("t", str(other))])
    g2 = Guest(svc, "t")
    assert g2.map_rc == 0 and g2.root == 1 and g.root == 0
    svc.set_folders([SharedFolderSpec("t", str(other))])
    assert g.create("/hello.txt", S.CF_LOOKUP)[0] == T.VERR_INVALID_PARAMETER     # share gone
    assert Guest(svc, "t").root == 1
