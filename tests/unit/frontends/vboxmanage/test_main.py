"""Process-level behaviour of the CLI that needs no service: version, help, usage, syntax errors."""

import os
import subprocess
import sys

import pytest

from frontends.vboxmanage import main as vbm
from frontends.vboxmanage.output import State
from vboxsvc.api import identity

LOGO = (f"Oracle VirtualBox Command Line Management Interface Version {identity.current().version}\n"
        f"Copyright (C) 2005-{2025 if identity.current().is_7_1 else 2024} Oracle and/or its affiliates\n\n")


@pytest.fixture(autouse=True)
def fresh_state():
    State.nologo = State.logo_shown = False
    yield
    State.nologo = State.logo_shown = False


def run(capsys, *args):
    code = vbm.run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("flag", ["--version", "-V", "-v", "-version", "-Version"])
def test_version(capsys, flag):
    assert run(capsys, flag) == (0, identity.current().full + "\n", "")


def test_no_arguments_prints_logo_and_usage(capsys):
    code, out, err = run(capsys)
    assert code == 0 and out.startswith(LOGO + "Usage:\n\n") and "VBoxManage modifyvm <uuid|vmname>" in out
    assert err == ""


def test_help_forms(capsys):
    code, out, _ = run(capsys, "help")
    assert code == 0 and out.startswith(LOGO + "Usage:")
    code, out, _ = run(capsys, "help", "createvm")
    assert code == 1 and out == LOGO + vbm.usage("createvm")
    code, out, _ = run(capsys, "createvm", "--help")
    assert code == 0 and out.startswith("Usage - Create a new virtual machine:\n\n  VBoxManage "
                                        "createvm --name=name")


def test_known_command_without_arguments_prints_usage_exit_1(capsys):
    code, out, err = run(capsys, "showvminfo")
    assert code == 1 and out.startswith("Usage - Show configuration information") and err == ""


def test_unknown_command_exit_2_with_logo_on_stderr(capsys):
    code, out, err = run(capsys, "frobnicate")
    assert (code, out) == (2, "")
    assert err == LOGO + "VBoxManage: error: Invalid command 'frobnicate'\n"


def test_nologo_suppresses_logo_before_syntax_errors(capsys):
    code, _, err = run(capsys, "--nologo", "frobnicate")
    assert code == 2 and err == "VBoxManage: error: Invalid command 'frobnicate'\n"
    State.logo_shown = False
    code, _, err = run(capsys, "-q", "list", "bogus")
    assert code == 2
    assert err.startswith('VBoxManage: error: Unknown subcommand "bogus".\n\nUsage - List system information')


def test_unknown_option_and_missing_value(capsys):
    code, _, err = run(capsys, "-q", "createvm", "--name", "x", "--frob")
    assert code == 2 and err.startswith("VBoxManage: error: Unknown option: --frob\n\nUsage - Create a new")
    code, _, err = run(capsys, "-q", "createvm", "--name")
    assert code == 2 and err.startswith("VBoxManage: error: Missing the 1st value for option --name\n")


def test_createvm_requires_name_before_touching_the_service(capsys):
    code, out, err = run(capsys, "-q", "createvm", "--register")
    assert (code, out) == (2, "")
    assert err.startswith("VBoxManage: error: Parameter --name is required\n\nUsage - Create a new "
                          "virtual machine")


def test_controlvm_rejects_unknown_action(capsys):
    code, _, err = run(capsys, "-q", "controlvm", "vm1", "explode")
    assert code == 2 and err.startswith("VBoxManage: error: Invalid parameter 'explode'\n")


def test_aliases_resolve(capsys):
    assert vbm.canonical("createhd") == "createmedium" and vbm.canonical("clonehd") == "clonemedium"
    assert vbm.canonical("showhdinfo") == "showmediuminfo" and vbm.canonical("nope") is None
    code, _, err = run(capsys, "-q", "createhd", "--size", "10")
    assert code == 2 and "Parameter --filename is required" in err


def test_commands_pseudo_command(capsys):
    code, out, _ = run(capsys, "commands")
    assert code == 0 and out.startswith("commands:\n    list\n") and "    createvdi\n" in out


def test_every_command_module_loads_and_has_usage():
    for name in vbm.COMMANDS:
        assert vbm.load(name).name == name
        assert vbm.usage(name).startswith("Usage - ")


def test_startup_imports_stay_light():
    """--version and the `list vms` fast path (listing) import no click; `list` loads neither pydantic nor
    lxml."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    probe = ("import sys; from frontends.vboxmanage import main as m; m.run(['--version']); "
             "import frontends.vboxmanage.listing; "
             "a = 'click' in sys.modules; m.load('list'); "
             "print(a, 'pydantic' in sys.modules, 'lxml' in sys.modules, 'click' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "False False False True"


def test_shell_completion_source(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    env = dict(os.environ, _VBOXMANAGE_COMPLETE="bash_source", VBOX_USER_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "frontends.vboxmanage.main"], cwd=root, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0 and "_vboxmanage_completion()" in out.stdout
    env = dict(env, _VBOXMANAGE_COMPLETE="bash_complete", COMP_WORDS="vboxmanage snaps", COMP_CWORD="1")
    out = subprocess.run([sys.executable, "-m", "frontends.vboxmanage.main"], cwd=root, env=env,
                         capture_output=True, text=True)
    assert out.stdout.split() == ["plain,snapshot"]


def test_missing_positional_is_not_enough_parameters(capsys):
    code, _, err = run(capsys, "-q", "controlvm", "vm1")
    assert code == 2 and err.startswith("VBoxManage: error: Not enough parameters\n\nUsage - Change state")


def test_modifyvm_option_completion(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    env = dict(os.environ, _VBOXMANAGE_COMPLETE="bash_complete",
               COMP_WORDS="vboxmanage modifyvm vm1 --uart-m",
               COMP_CWORD="3", VBOXPY_RUNTIME_DIR=str(tmp_path), VBOX_USER_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "frontends.vboxmanage.main"], cwd=root, env=env,
                         capture_output=True, text=True)
    assert out.stdout.split() == ["plain,--uart-mode1"]


def test_command_run_exits_with_its_code_and_all_its_output(tmp_path):
    """A command run ends without tearing the interpreter down: what it wrote to a pipe arrives whole
    (stdout and stderr) and its exit code is VBoxManage's."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["VBOX_USER_HOME"] = str(tmp_path)
    cmd = [sys.executable, "-m", "frontends.vboxmanage.main"]
    out = subprocess.run(cmd + ["help"], cwd=root, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == vbm.logo() + "\n" + vbm.full_usage()
    out = subprocess.run(cmd + ["--version"], cwd=root, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == vbm.version_text() + "\n"   # short: in the buffer
    out = subprocess.run(cmd + ["nosuchcommand"], cwd=root, env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "Invalid command 'nosuchcommand'" in out.stderr
