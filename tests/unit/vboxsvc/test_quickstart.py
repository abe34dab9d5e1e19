"""The quick start's pieces (vboxsvc/server/quickstart.py): what it answers, how it reads files,
and when it refuses; the service-level behaviour is in tests/integration/vboxsvc/test_quick_start.py."""

from __future__ import annotations

import json
import os
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from vboxsvc.ipc.wire import KIND_CALL, KIND_GET, KIND_SET
from vboxsvc.server import quickstart as qs

VBOX = """<?xml version="1.0"?>
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.12-linux">
  <Global>
    <MachineRegistry>
      <MachineEntry uuid="{UUID}" src="VMs/one/one.vbox"/>
    </MachineRegistry>
  </Global>
</VirtualBox>
"""
MACHINE = """<?xml version="1.0"?>
<!-- a comment first, as VirtualBox writes -->
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux">
  <Machine uuid="{UUID}" name="one &amp; only" OSType="Linux_64">
    <Hardware/>
  </Machine>
</VirtualBox>
"""


def _home(tmp_path, uid: str) -> tuple[str, str]:
    home = tmp_path / "home"
    (home / "VMs" / "one").mkdir(parents=True)
    (home / "VirtualBox.xml").write_text(VBOX.replace("UUID", uid))
    (home / "VMs" / "one" / "one.vbox").write_text(MACHINE.replace("UUID", uid.upper()))
    return str(home), str(tmp_path / "record.json")


def _record(home: str, record: str) -> None:
    files = [os.path.join(home, "VirtualBox.xml"), os.path.join(home, "VMs/one/one.vbox")]
    known = {p: qs.file_key(p) for p in files}
    assert qs.leave_record(home, record, known)


def test_the_quick_view_reads_name_and_uuid_as_the_api_spells_them(tmp_path):
    uid = str(uuid.uuid4())
    home, record = _home(tmp_path, uid)
    assert qs.quick_view(home, record) is None          # no record yet: the full read first
    left = f"{record}.tmp"                               # of a service killed while writing it
    open(left, "w").write("{")
    _record(home, record)
    assert not os.path.exists(left)
    view = qs.quick_view(home, record)
    assert [(m.id, m.name) for m in view.machines] == [(uid, "one & only")]


def test_any_change_refuses_the_quick_view(tmp_path):
    uid = str(uuid.uuid4())
    home, record = _home(tmp_path, uid)
    _record(home, record)
    vbox_file = os.path.join(home, "VMs/one/one.vbox")
    os.utime(vbox_file)                                   # same bytes, touched: not the file recorded
    assert qs.quick_view(home, record) is None
    _record(home, record)
    assert qs.quick_view(home, record) is not None
    os.makedirs(os.path.join(home, "journal"))
    open(os.path.join(home, "journal", "rename-x.json"), "w").close()   # an operation to finish first
    assert qs.quick_view(home, record) is None
    os.unlink(os.path.join(home, "journal", "rename-x.json"))
    data = json.loads(open(record).read())
    data["code"][0] = -1                                  # another version of the code judged the files
    open(record, "w").write(json.dumps(data))
    assert qs.quick_view(home, record) is None


def test_an_invalid_or_missing_machine_file_is_recorded_inaccessible(tmp_path):
    uid = str(uuid.uuid4())
    home, record = _home(tmp_path, uid)
    assert qs.leave_record(home, record, {})             # nothing known: each file read now, valid
    assert qs.quick_view(home, record).machines[0].accessible
    vbox_file = os.path.join(home, "VMs/one/one.vbox")
    text = open(vbox_file).read().replace('OSType="Linux_64"', 'lastStateChange="yesterday"')
    open(vbox_file, "w").write(text)
    assert qs.quick_view(home, record) is None           # changed since: the full read first
    # not among the files found valid: read now, refused by the full read, recorded as inaccessible
    assert qs.leave_record(home, record, {})
    (m,) = qs.quick_view(home, record).machines
    assert (m.id, m.name, m.accessible) == (uid, uid, False)
    os.unlink(vbox_file)
    assert qs.quick_view(home, record) is None
    assert qs.leave_record(home, record, {})              # missing, nothing to restore it from
    assert not qs.quick_view(home, record).machines[0].accessible
    open(vbox_file + "-prev", "w").write(text)            # the full read would try to restore it
    assert qs.quick_view(home, record) is None
    assert not qs.leave_record(home, record, {}) and not os.path.exists(record)


def test_an_invalid_main_file_leaves_no_record(tmp_path):
    home, record = _home(tmp_path, str(uuid.uuid4()))
    _record(home, record)
    main = os.path.join(home, "VirtualBox.xml")
    text = open(main).read()
    uid = text.split('uuid="')[1].split('"')[0]
    open(main, "w").write(text.replace(uid, "not-a-uuid"))     # well-formed; the full read refuses it
    assert qs.registry(main) is not None
    assert not qs.leave_record(home, record, {}) and not os.path.exists(record)


@given(st.uuids(), st.sampled_from(["{%s}", "%s", "urn:uuid:%s", " %s "]), st.booleans(), st.booleans())
@settings(max_examples=200)
def test_api_uuid_spells_as_uuid_module(value, form, upper, hyphens):
    text = str(value) if hyphens else value.hex
    text = form % (text.upper() if upper else text)
    assert qs.api_uuid(text) == str(uuid.UUID(text.strip().strip("{}")))


def test_api_uuid_refuses_what_is_not_a_uuid():
    for text in ("", "{}", "1234", "g" * 32, "0" * 31, "0" * 33, "0000-0000"):
        assert qs.api_uuid(text) is None


def test_only_list_reads_on_quick_objects_are_answered():
    m = qs.QuickMachine("u", "n", "/p")
    v = qs.QuickVirtualBox([m])
    assert qs.answers({"op": "hello", "pid": 1})
    assert not qs.answers({"op": "hello", "pid": 1, "token": "t"})   # a VM process: the real registry
    assert qs.answers({"op": "call", "o": v, "k": KIND_GET, "m": "machines", "a": []})
    assert qs.answers({"op": "batch", "b": [[m, KIND_GET, "name", []], [m, KIND_GET, "id", []],
                                            [m, KIND_GET, "accessible", []]]})
    refused = [
        {"op": "call", "o": v, "k": KIND_GET, "m": "version", "a": []},
        {"op": "call", "o": m, "k": KIND_SET, "m": "name", "a": ["x"]},
        {"op": "call", "o": m, "k": KIND_CALL, "m": "name", "a": []},
        {"op": "call", "o": m, "k": KIND_GET, "m": "name", "a": [1]},
        {"op": "call", "o": m, "k": KIND_GET, "m": "name", "a": [], "w": {"x": 1}},
        {"op": "call", "o": object(), "k": KIND_GET, "m": "name", "a": []},
        {"op": "call", "o": m, "k": KIND_GET, "m": ["name"], "a": []},
        {"op": "call", "o": m, "k": KIND_GET, "m": {"x": 1}, "a": []},
        {"op": "batch", "b": [[m, KIND_GET, "name", []], [m, KIND_GET, "memory_size", []]]},
        {"op": "batch", "b": [[m, KIND_GET, "name"]]},
        {"op": "batch", "b": "x"},
        {"op": "batch", "b": [None]},
        {"op": "ret", "i": 1},
        {"op": 5},
        {},
        [],
        "hello",
        None,
    ]
    for msg in refused:
        assert not qs.answers(msg), msg


def test_the_real_objects_take_over_the_quick_references():
    from types import SimpleNamespace

    from vboxsvc.ipc.dispatcher import ObjectTable

    class View:
        __interface__ = "IMachine"

    class Vbox:
        __interface__ = "IVirtualBox"

    table = ObjectTable(b"")
    quick = qs.QuickVirtualBox([qs.QuickMachine("u1", "one", "/1"), qs.QuickMachine("u2", "two", "/2")])
    refs = [table.ref(quick)] + [table.ref(m) for m in quick.machines]
    vbox, view = Vbox(), View()
    vbox.cores = [SimpleNamespace(id="u1", view=view)]        # u2 is gone from the full read
    qs.take_over(table, quick, vbox)
    assert table.get(refs[0].oid) is vbox and table.ref(vbox) == refs[0]
    assert table.get(refs[1].oid) is view and table.ref(view) == refs[1]
    assert table.get(refs[2].oid) is None
    # a full read that failed: the quick references name nothing any more
    table = ObjectTable(b"")
    refs = [table.ref(quick)] + [table.ref(m) for m in quick.machines]
    qs.take_over(table, quick, None)
    assert all(table.get(r.oid) is None for r in refs)
