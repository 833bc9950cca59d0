"""`cxmpute vms` through the platform client: an SSH key pair is made when the user has none, a missing
--ssh-key is one line naming it, refusals are one line naming the field (exit 1) and an unreachable platform
is exit 2. No machine boots here."""

from __future__ import annotations

import json
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from compute.vms import cli as vms_cli
from cxmpute.cli import app
from cxmpute.settings import get_settings

runner = CliRunner()
DOWN = "http://127.0.0.1:9"  # nothing listens on the discard port
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0iQmfP3Wj4p0t3sXyq8m6TnY0wTfvYd5H2V4xYQ1c me@x"


def _error_line(result, code: int) -> str:
    """The failure the root CLI printed: the last line on stderr, after a clean exit with ``code``."""
    assert result.exit_code == code and isinstance(result.exception, SystemExit), (result.output, result.exception)
    assert "Traceback" not in result.output
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture
def user_home(tmp_path, monkeypatch):
    """A home folder with no ~/.ssh, and a data dir of the CLI's own for the key it makes."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    settings = get_settings().model_copy(update={"home": tmp_path / "data"})
    monkeypatch.setattr(vms_cli, "get_settings", lambda: settings)
    return tmp_path


def _create(*extra: str):
    return runner.invoke(
        app, ["vms", "create", "--kernel", "bafy-any", "--max-price", "1", "--max-duration", "60", *extra]
    )


def test_without_a_key_a_pair_is_made_in_the_data_dir_and_kept(user_home, api_url, monkeypatch):
    monkeypatch.setattr(get_settings(), "api_url", api_url)
    first = _create()
    private, public = user_home / "data" / "ssh" / "id_ed25519", user_home / "data" / "ssh" / "id_ed25519.pub"
    assert f"made an SSH key pair for your machines: {private}" in first.stderr
    # The platform was asked, and refused this machine (no vm provision takes a 1 gwei ask): one line, exit 1.
    assert _error_line(first, 1).startswith("error (")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = serialization.load_ssh_private_key(private.read_bytes(), password=None)
    assert (
        public.read_text().split()[:2]
        == key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
        .split()
    )
    made = private.read_bytes()

    again = _create()
    assert "made an SSH key pair" not in again.stderr and private.read_bytes() == made


def test_the_default_key_is_used_when_it_exists(user_home, monkeypatch):
    monkeypatch.setattr(get_settings(), "api_url", DOWN)
    ssh = user_home / "home" / ".ssh"
    ssh.mkdir()
    (ssh / "id_ed25519.pub").write_text(KEY + "\n")
    result = _create()
    assert "CXMPUTE_API_URL" in _error_line(result, 2)
    assert not (user_home / "data" / "ssh").exists()


def test_a_given_key_that_does_not_exist_is_one_line_naming_ssh_key(user_home, monkeypatch):
    monkeypatch.setattr(get_settings(), "api_url", DOWN)  # refused before the platform is asked: exit 1, not 2
    result = _create("--ssh-key", str(user_home / "nope.pub"))
    assert _error_line(result, 1) == f"error (--ssh-key): no SSH public key file at {user_home / 'nope.pub'}"
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (user_home / "data" / "ssh").exists()


def test_refusals_name_the_field_and_lists_offer_json(api_url, monkeypatch):
    monkeypatch.setattr(get_settings(), "api_url", api_url)
    missing = runner.invoke(app, ["vms", "show", "no-such-vm"])
    assert _error_line(missing, 1) == "error (vm_id): no vm no-such-vm"
    assert len(missing.stderr.strip().splitlines()) == 1
    listed = runner.invoke(app, ["vms", "ls", "--all", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []


@pytest.mark.parametrize(
    "args",
    [["ls"], ["show", "x"], ["console", "x"], ["start", "x"], ["stop", "x"], ["snapshot", "x", "s"], ["rm", "x"]],
)
def test_an_unreachable_platform_is_exit_2(args, monkeypatch):
    monkeypatch.setattr(get_settings(), "api_url", DOWN)
    result = runner.invoke(app, ["vms", *args])
    assert "not answering" in _error_line(result, 2) and len(result.stderr.strip().splitlines()) == 1
