"""Guest property flags and patterns (GuestPropValidateFlags / GuestPropWriteFlags, IPRT's simple
patterns) and the identity picked from the environment."""

import pytest

from vboxsvc.api import VBoxError, guestprop, identity


def test_flags_parse_normalise_and_reject():
    assert guestprop.normalise_flags("") == ""
    assert guestprop.normalise_flags("rdonlyguest") == "RDONLYGUEST"
    assert guestprop.normalise_flags("RDONLYGUEST, RDONLYHOST") == "READONLY"
    # TRANSRESET implies TRANSIENT
    assert guestprop.normalise_flags(" transreset ") == "TRANSIENT, TRANSRESET"
    assert guestprop.normalise_flags("RDONLYHOST,TRANSIENT") == "TRANSIENT, RDONLYHOST"
    assert guestprop.parse_flags("READONLY") & guestprop.RDONLYHOST
    with pytest.raises(VBoxError) as e:
        guestprop.parse_flags("TRANSIENT, NOPE")
    assert "Invalid guest property flag 'NOPE'" in e.value.text


def test_patterns_are_iprt_simple_patterns():
    assert guestprop.matches("", "/any")
    assert guestprop.matches("/VirtualBox/*", "/VirtualBox/GuestAdd/Version")
    assert guestprop.matches("/a|/b*", "/bee") and guestprop.matches("/x,/a", "/a")
    assert guestprop.matches("/?", "/z") and not guestprop.matches("/?", "/zz")
    assert not guestprop.matches("/[ab]", "/a") and guestprop.matches("/[ab]", "/[ab]")


def test_identity_from_environment():
    assert identity.current({}).branch == identity.DEFAULT == "7.0"
    v70 = identity.current({identity.ENV: "7.0"})
    assert v70.version.startswith("7.0.") and v70.version != "7.0.0" and v70.api_version == "7_0"
    v71 = identity.current({identity.ENV: "7.1.6"})
    assert v71.is_7_1 and v71.full == f"{v71.version}r{v71.revision}" and v71.api_version == "7_1"
    assert identity.current({identity.ENV: "6.1"}).branch == "7.0"
    assert identity.branch_of("7.1.6r167084") == "7.1" and identity.branch_of("junk") is None
