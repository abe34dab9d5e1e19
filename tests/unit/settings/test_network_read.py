"""Reading `<Network>`: every adapter slot comes back, those in the file as written, the others at
their defaults; an ICH9 machine's slots beyond 8 widen the list to 36; the attachment's settings
are found in the active mode element, else in DisabledModes; pre-2.1's HostInterface is Bridged."""

from lxml import etree

from settings.network_xml import read_adapters

NS = "http://www.virtualbox.org/"


def _hw(adapters: str):
    return etree.fromstring(f'<Hardware xmlns="{NS}"><Network>{adapters}</Network></Hardware>')


def test_slots_in_the_file_and_defaults_around_them():
    got = read_adapters(_hw('<Adapter slot="2" enabled="true" type="82540EM" MACAddress="080027AABBCC">'
                            '<NAT/></Adapter>'), 19)
    assert [a.slot for a in got] == list(range(8))
    assert (got[2].enabled, got[2].type, got[2].mac, got[2].attachment_type) == (True, "I82540EM",
                                                                                 "080027AABBCC", "NAT")
    assert got[0] == read_adapters(None, 19)[0] and not got[0].enabled


def test_a_slot_beyond_eight_widens_to_thirty_six():
    got = read_adapters(_hw('<Adapter slot="20" enabled="true"><InternalNetwork name="intnet"/>'
                            '</Adapter>'), 19)
    assert len(got) == 36 and [a.slot for a in got] == list(range(36))
    assert (got[20].attachment_type, got[20].internal_network) == ("Internal", "intnet")


def test_parked_modes_and_the_pre_2_1_bridged_name():
    got = read_adapters(_hw(
        '<Adapter slot="0"><NAT/><DisabledModes><InternalNetwork name="parked"/>'
        '<NAT><Forwarding name="ssh" proto="1" hostport="2222" guestport="22"/></NAT>'
        '</DisabledModes></Adapter>'
        '<Adapter slot="1"><HostInterface name="eth0"/></Adapter>'
        '<Adapter slot="3"><BridgedInterface name="br0"/><DisabledModes><HostInterface name="old"/>'
        '</DisabledModes></Adapter>'), 19)
    assert (got[0].attachment_type, got[0].internal_network) == ("NAT", "parked")
    assert got[0].nat_rules == []              # the active NAT element has no rules
    assert (got[1].attachment_type, got[1].bridged_interface) == ("Bridged", "eth0")
    assert got[3].bridged_interface == "br0"   # the active element wins over a parked one
