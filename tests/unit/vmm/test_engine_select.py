"""EM's engine choice and host detection."""

import pytest

from vmm.engine_select import (
    EngineSelectError,
    HostVirt,
    choose_engine,
    create_engine,
    detect_host,
    force_hm_requested,
)


def host(**kw):
    base = dict(kvm_present=True, kvm_usable=True, kvm_problem="", pvm=False, vtx=True, amdv=False,
                nested_paging=True, unrestricted_guest=True)
    base.update(kw)
    return HostVirt(**base)


def test_hwvirtex_on_with_vtx_uses_hm():
    c = choose_engine(True, host=host())
    assert c.kind == "hm" and "VT-x" in c.reason


def test_hwvirtex_off_always_rem():
    c = choose_engine(False, host=host())
    assert c.kind == "rem" and "--hwvirtex off" in c.reason


def test_pvm_counts_as_no_vtx():
    c = choose_engine(True, host=host(pvm=True, vtx=False))
    assert c.kind == "rem" and "PVM" in c.reason and "vboxpy/ForceHM" in c.reason


def test_force_hm_uses_pvm_even_with_hwvirtex_off():
    c = choose_engine(False, force_hm=True, host=host(pvm=True, vtx=False))
    assert c.kind == "hm" and "PVM" in c.reason


def test_force_hm_without_kvm_is_an_error():
    with pytest.raises(EngineSelectError, match="not usable"):
        choose_engine(True, force_hm=True, host=host(kvm_usable=False, kvm_problem="no /dev/kvm"))


def test_unusable_kvm_falls_back_to_rem_with_reason():
    c = choose_engine(True, host=host(kvm_usable=False, kvm_problem="permission denied"))
    assert c.kind == "rem" and "permission denied" in c.reason


def test_force_hm_values():
    assert force_hm_requested("1") and force_hm_requested("true") and force_hm_requested(" On ")
    assert not force_hm_requested(None) and not force_hm_requested("0") and not force_hm_requested("")


def test_detect_host_from_fake_sources(tmp_path):
    (tmp_path / "kvm_pvm").mkdir()
    (tmp_path / "kvm_intel" / "parameters").mkdir(parents=True)
    (tmp_path / "kvm_intel" / "parameters" / "unrestricted_guest").write_text("Y\n")
    cpuinfo = "processor\t: 0\nflags\t\t: fpu vme vmx ept lm\n"
    h = detect_host(device=str(tmp_path / "nokvm"), cpuinfo=cpuinfo, sys_module=str(tmp_path))
    assert not h.kvm_present and not h.kvm_usable and "does not exist" in h.kvm_problem
    assert h.pvm and h.vtx and not h.amdv and h.nested_paging and h.unrestricted_guest
    assert h.hw_virtualization and not h.hm_for_stock_guests
    none = detect_host(device=str(tmp_path / "nokvm"), cpuinfo="flags : fpu hypervisor\n",
                       sys_module=str(tmp_path / "empty"))
    assert (not none.hw_virtualization and not none.nested_paging and not none.unrestricted_guest
            and not none.pvm)


def test_detect_host_unopenable_device(tmp_path):
    fake = tmp_path / "kvm"
    fake.write_text("")
    fake.chmod(0)
    h = detect_host(device=str(fake), cpuinfo="", sys_module=str(tmp_path))
    assert h.kvm_present and not h.kvm_usable and h.kvm_problem


def test_create_engine_rejects_unknown_kind():
    with pytest.raises(ValueError):
        create_engine("tcg", None, None, None)
