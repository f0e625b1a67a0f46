"""location and remote: parsing ssh:// URLs, building the ssh command line, picking a store."""

from __future__ import annotations

from pathlib import Path

import pytest

from repofs.errors import RepositoryNotFound
from repofs.location import is_remote, open_store
from repofs.remote import SshLocation, parse_url, ssh_argv
from repofs.store import LocalStore


@pytest.mark.parametrize(("url", "want"), [
    ("ssh://host/srv/repo", SshLocation("host", "/srv/repo")),
    ("ssh://backup@host:2222/srv/repo", SshLocation("host", "/srv/repo", "backup", 2222)),
    ("ssh://host/./relative/repo", SshLocation("host", "relative/repo")),
    ("ssh://host", SshLocation("host", "")),
    ("ssh://[::1]:22/r", SshLocation("::1", "/r", None, 22)),
    ("ssh://host/with%20space", SshLocation("host", "/with space")),
])
def test_parse(url: str, want: SshLocation) -> None:
    assert parse_url(url) == want


@pytest.mark.parametrize("url", [
    "ssh://-oProxyCommand=evil/x", "ssh://host:notaport/x", "ssh://host:99999/x",
    "ssh://user:password@host/x", "ssh://-user@host/x", "ssh://host/x?q=1", "ssh://host/x#f",
    "ssh:///x", "ssh://host/a%00b", "ssh://ho st/x", "sftp://host/x",
])
def test_parse_refuses(url: str) -> None:
    with pytest.raises(RepositoryNotFound):
        parse_url(url)


def test_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    loc = SshLocation("host", "/srv/my repo; rm -rf /", "backup", 2222)
    monkeypatch.delenv("REPOFS_SSH", raising=False)
    monkeypatch.delenv("REPOFS_REMOTE_COMMAND", raising=False)
    assert ssh_argv(loc) == ["ssh", "-p", "2222", "--", "backup@host",
                             "repofs serve '/srv/my repo; rm -rf /'"]
    monkeypatch.setenv("REPOFS_SSH", "-i '/keys/my key' -o BatchMode=yes")
    assert ssh_argv(loc)[:5] == ["ssh", "-i", "/keys/my key", "-o", "BatchMode=yes"]
    monkeypatch.setenv("REPOFS_SSH", "/usr/local/bin/my-ssh -q")
    monkeypatch.setenv("REPOFS_REMOTE_COMMAND", "/opt/repofs/bin/repofs")
    assert ssh_argv(SshLocation("h", "")) == ["/usr/local/bin/my-ssh", "-q", "--", "h",
                                              "/opt/repofs/bin/repofs serve"]


def test_str_round_trips() -> None:
    for url in ("ssh://host/srv/repo", "ssh://backup@host:2222/srv/repo",
                "ssh://host/./rel", "ssh://[::1]:22/r"):
        assert str(parse_url(url)) == url


def test_store_choice(shm_dir: Path) -> None:
    assert is_remote("ssh://h/x") and is_remote("s3://bucket/x")
    assert not is_remote("/srv/repo") and not is_remote(shm_dir) and not is_remote("a:b")
    LocalStore.create(shm_dir / "r", b"config")
    assert isinstance(open_store(shm_dir / "r"), LocalStore)
    assert isinstance(open_store(str(shm_dir / "r")), LocalStore)
    with pytest.raises(RepositoryNotFound, match="ftp:// are not supported"):
        open_store("ftp://host/x")
    with pytest.raises(RepositoryNotFound, match="invalid bucket name"):
        open_store("s3://bucket/x")  # s3://HOST/BUCKET: "x" is no bucket name
