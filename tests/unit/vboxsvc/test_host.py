"""Host facts: hardware virtualization is usable only with a real VT-x/AMD-V KVM (PVM is not)."""

from __future__ import annotations

import os

from vboxsvc.api.enums import ProcessorFeature
from vboxsvc.server import guestos
from vboxsvc.server.host import Host, hw_virt_status
from vboxsvc.server.statedeps import MUTABLE, MUTABLE_OR_SAVED, check_mutable, check_transition


def test_pvm_is_not_hardware_virtualization(tmp_path):
    kvm = tmp_path / "kvm"
    kvm.write_bytes(b"")
    pvm = tmp_path / "kvm_pvm"
    pvm.mkdir()
    usable, why = hw_virt_status(str(kvm), str(pvm))
    assert not usable and "PVM" in why
    usable, why = hw_virt_status(str(tmp_path / "nokvm"), str(tmp_path / "nopvm"))
    assert not usable and "does not exist" in why
    usable, _ = hw_virt_status(str(kvm), str(tmp_path / "nopvm"))
    assert usable  # a device we can open read-write, no PVM module


def test_host_reports_real_values():
    h = Host()
    assert h.processor_count == os.cpu_count()
    assert h.memory_size > 0 and h.operating_system == "Linux"
    real, _ = hw_virt_status()
    assert h.get_processor_feature(ProcessorFeature.HWVirtEx) == real
    assert isinstance(h.get_processor_description(0), str)


def test_guest_os_table():
    for os_id in ("Linux_64", "Debian_64", "Ubuntu_64", "Windows10_64", "Other"):
        t = guestos.get(os_id)
        assert t.id == os_id and t.recommended_ram > 0
    assert guestos.get("Windows10_64").is64_bit and guestos.get("Windows10_64").family_id == "Windows"
    assert not guestos.get("Other").is64_bit
    assert guestos.lookup("ubuntu_64").id == "Ubuntu_64"
    assert "Linux" in guestos.families()


def test_state_rules():
    check_mutable(False, False, 6, MUTABLE)  # unregistered: always mutable
    check_mutable(True, True, 1, MUTABLE)
    check_mutable(True, True, 2, MUTABLE_OR_SAVED)
    for registered, session, state, dep, text in (
            (True, False, 1, MUTABLE, "The machine is not mutable (state is PoweredOff)"),
            (True, True, 6, MUTABLE, "The machine is not mutable (state is Running)"),
            (True, True, 5, MUTABLE, "The machine is not mutable (state is Aborted-Saved)"),
            (True, True, 6, MUTABLE_OR_SAVED, "The machine is not mutable or saved (state is Running)")):
        try:
            check_mutable(registered, session, state, dep)
        except Exception as e:
            assert e.text == text and e.result_code == 0x80BB0002
        else:
            raise AssertionError("mutable check passed")
    check_transition(1, 11)
    check_transition(6, 7)
    try:
        check_transition(1, 6)
    except Exception as e:
        assert "PoweredOff to Running" in e.text
    else:
        raise AssertionError("PoweredOff -> Running accepted")
