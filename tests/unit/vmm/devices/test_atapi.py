"""The CD/DVD drive's MMC command layer, driven with CDBs (no transport)."""

import os
import random
import struct

import pytest

from vmm.devices import atapi
from vmm.devices.atapi import AtapiDrive

from .fake_disk import RawFile

BLOCKS = 64


@pytest.fixture
def iso(tmp_path):
    img = RawFile(tmp_path / "disc.iso", BLOCKS * 2048, read_only=True)
    for lba in range(BLOCKS):
        os.pwrite(img.fd, struct.pack("<I", lba) * 512, lba * 2048)
    yield img
    img.close()


def cdb(*b):
    return bytes(b).ljust(12, b"\0")


def sense(drive):
    r = drive.command(cdb(atapi.REQUEST_SENSE, 0, 0, 0, 18))
    assert not r.check
    return r.data[2] & 0xF, r.data[12], r.data[13]


def data(drive, r):
    buf = bytearray(r.data_in)
    assert drive.read_data(r, 0, [memoryview(buf)]) == len(buf)
    return bytes(buf)


def test_empty_drive_reports_no_medium():
    d = AtapiDrive(None)
    assert d.command(cdb(atapi.TEST_UNIT_READY)).check
    assert sense(d) == (atapi.NOT_READY, 0x3A, 0)
    assert sense(d) == (0, 0, 0)                       # REQUEST SENSE clears it
    assert d.command(cdb(atapi.READ_CAPACITY)).check
    r = d.command(cdb(atapi.GET_CONFIGURATION, 0, 0, 0, 0, 0, 0, 0, 255))
    assert r.data[6:8] == b"\0\0"                      # no current profile


def test_inquiry_capacity_and_reads(iso):
    d = AtapiDrive(iso)
    inq = d.command(cdb(atapi.INQUIRY, 0, 0, 0, 36)).data
    assert inq[0] == 5 and inq[1] & 0x80 and inq[8:16] == b"VBOX    " and inq[16:22] == b"CD-ROM"
    assert d.command(cdb(atapi.INQUIRY, 0, 0, 0, 5)).data == inq[:5]
    cap = d.command(cdb(atapi.READ_CAPACITY)).data
    assert struct.unpack(">II", cap) == (BLOCKS - 1, 2048)
    r = d.command(cdb(atapi.READ_10, 0, 0, 0, 0, 3, 0, 0, 2))
    assert r.data_in == 4096
    got = data(d, r)
    assert got[:4] == struct.pack("<I", 3) and got[2048:2052] == struct.pack("<I", 4)
    r = d.command(cdb(atapi.READ_12, 0, 0, 0, 0, BLOCKS - 1, 0, 0, 0, 1))
    assert data(d, r)[:4] == struct.pack("<I", BLOCKS - 1)
    r = d.command(cdb(atapi.READ_CD, 0, 0, 0, 0, 5, 0, 0, 1, 0x10))
    assert data(d, r)[:4] == struct.pack("<I", 5)
    assert d.command(cdb(atapi.READ_10, 0, 0, 0, 0, 0, 0, 0, 0)).data_in == 0     # zero blocks


@pytest.mark.parametrize("command", [
    cdb(atapi.READ_10, 0, 0, 0, 0, BLOCKS, 0, 0, 1),
    cdb(atapi.READ_10, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF),
    cdb(atapi.READ_12, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF),
    cdb(atapi.READ_CD, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x10),
])
def test_wild_lbas_and_lengths_are_out_of_range(iso, command):
    d = AtapiDrive(iso)
    assert d.command(command).check
    assert sense(d) == (atapi.ILLEGAL_REQUEST, 0x21, 0)


def test_unknown_opcode_and_bad_fields(iso):
    d = AtapiDrive(iso)
    assert d.command(cdb(0x2A)).check                  # WRITE(10) on a read-only drive
    assert sense(d) == (atapi.ILLEGAL_REQUEST, 0x20, 0)
    assert d.command(cdb(atapi.GET_EVENT_STATUS, 0, 0, 0, 0x10, 0, 0, 0, 8)).check   # not polled
    assert sense(d) == (atapi.ILLEGAL_REQUEST, 0x24, 0)
    assert d.command(cdb(atapi.MODE_SENSE_10, 0, 0x05, 0, 0, 0, 0, 0, 64)).check
    assert d.command(cdb(atapi.MODE_SENSE_10, 0, 0xEA, 0, 0, 0, 0, 0, 64)).check   # saved values
    assert sense(d) == (atapi.ILLEGAL_REQUEST, 0x39, 0)


def test_toc_configuration_and_mode_pages(iso):
    d = AtapiDrive(iso)
    toc = d.command(cdb(atapi.READ_TOC, 0, 0, 0, 0, 0, 0, 0, 255)).data
    assert toc[:4] == bytes((0, 18, 1, 1))
    assert toc[4:12] == bytes((0, 0x14, 1, 0, 0, 0, 0, 0))
    assert toc[12:20] == bytes((0, 0x14, 0xAA, 0)) + struct.pack(">I", BLOCKS)
    msf = d.command(cdb(atapi.READ_TOC, 2, 0, 0, 0, 0, 0, 0, 255)).data
    assert msf[8:12] == bytes((0, 0, 2, 0))            # track 1 at 00:02:00
    session = d.command(cdb(atapi.READ_TOC, 0, 1, 0, 0, 0, 0, 0, 12)).data
    assert session[:4] == bytes((0, 10, 1, 1))
    assert len(d.command(cdb(atapi.READ_TOC, 0, 2, 0, 0, 0, 0, 0, 255)).data) == 4 + 4 * 11
    conf = d.command(cdb(atapi.GET_CONFIGURATION, 0, 0, 0, 0, 0, 0, 0x01, 0)).data
    assert conf[6:8] == struct.pack(">H", atapi.PROFILE_CD_ROM)
    assert struct.unpack(">I", conf[:4])[0] == len(conf) - 4
    one = d.command(cdb(atapi.GET_CONFIGURATION, 2, 0, 0x1E, 0, 0, 0, 0, 64)).data
    assert one[8:10] == b"\x00\x1e" and len(one) == 16
    page = d.command(cdb(atapi.MODE_SENSE_10, 0, 0x2A, 0, 0, 0, 0, 0, 255)).data
    assert page[8] == 0x2A and page[10] & 0x08 and page[14] & 0x08        # DVD-ROM read, eject
    info = d.command(cdb(atapi.READ_DISC_INFO, 0, 0, 0, 0, 0, 0, 0, 34)).data
    assert info[2] == 0x0E and len(info) == 34


def test_medium_change_attention_events_and_locked_eject(iso):
    ejected = []
    d = AtapiDrive(None, on_eject=lambda: ejected.append(True))
    d.insert(iso)
    ev = d.command(cdb(atapi.GET_EVENT_STATUS, 1, 0, 0, 0x10, 0, 0, 0, 8)).data
    assert ev[2] == 0x04 and ev[4] == atapi.EVENT_NEW_MEDIA and ev[5] & 0x02
    ev = d.command(cdb(atapi.GET_EVENT_STATUS, 1, 0, 0, 0x10, 0, 0, 0, 8)).data
    assert ev[4] == atapi.EVENT_NONE
    assert d.command(cdb(atapi.TEST_UNIT_READY)).check       # unit attention, once
    assert sense(d) == (atapi.UNIT_ATTENTION, 0x28, 0)
    assert not d.command(cdb(atapi.TEST_UNIT_READY)).check
    assert not d.command(cdb(atapi.PREVENT_ALLOW, 0, 0, 0, 1)).check
    assert d.command(cdb(atapi.START_STOP_UNIT, 0, 0, 0, 0x02)).check
    assert sense(d) == (atapi.ILLEGAL_REQUEST, 0x53, 0x02)
    d.command(cdb(atapi.PREVENT_ALLOW, 0, 0, 0, 0))
    assert not d.command(cdb(atapi.START_STOP_UNIT, 0, 0, 0, 0x02)).check
    assert ejected == [True] and d.image is None
    ev = d.command(cdb(atapi.GET_EVENT_STATUS, 1, 0, 0, 0x10, 0, 0, 0, 8)).data
    assert ev[4] == atapi.EVENT_MEDIA_REMOVAL and not ev[5] & 0x02


def test_random_cdbs_never_raise(iso):
    rnd = random.Random(7)
    d = AtapiDrive(iso)
    for _ in range(5000):
        c = bytes(rnd.getrandbits(8) for _ in range(12))
        if rnd.random() < 0.5:
            c = bytes((rnd.choice(list(atapi._HANDLERS)),)) + c[1:]
        r = d.command(c)
        if r.data_in and r.data_in < 1 << 20:
            data(d, r)
    assert not d.command(cdb(atapi.TEST_UNIT_READY)).check or d.image is None
