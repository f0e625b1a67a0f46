"""No path a client (or a planted symlink) names leaves the restricted directory.

The forced command fixes ``--restrict-to-path``; the client chooses only a path inside
it (SSH_ORIGINAL_COMMAND). Symlinks planted in the repository by someone with raw access
are refused, not followed: at start for directories and the config, per request for
objects. Each refusal reaches the client as a one-line error.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from repofs import protocol, spec
from repofs.server import ServeRefused, select_path

from .victim import Client, Victim
from .wire import Wire, refused


@pytest.fixture
def layout(victim: Victim) -> tuple[Path, Path, Path]:
    """srv/ (the restriction) holding the repository web1, a symlink alias to it, a symlink
    escape to a repository outside, and that outside repository."""
    srv = victim.restrict.parent
    outside = victim.base / "outside"
    (outside / "repo").mkdir(parents=True)
    os.symlink(outside / "repo", srv / "escape")
    os.symlink("web1", srv / "alias")
    return srv, victim.restrict, outside


def serve_err(restrict: Path, command: str) -> str:
    w = Wire(restrict, command=command)
    w.send({"op": "hello", "v": protocol.VERSION})
    rc, err = w.finish()
    assert rc == 2, err
    assert err.startswith("repofs: error: serve: ") and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize(("asked", "says"), [
    ("{srv}/../outside/repo", "contains '..'"),
    ("{srv}/web1/../../outside/repo", "contains '..'"),
    ("..", "contains '..'"),
    ("/etc", "outside the restricted path"),
    ("/", "outside the restricted path"),
    ("{srv}/escape", "outside the restricted path"),
    ("escape", "outside the restricted path"),
    ("{srv}-evil", "outside the restricted path"),
])
def test_paths_that_leave_the_restriction(layout: tuple[Path, Path, Path], asked: str,
                                          says: str) -> None:
    srv, _, _ = layout
    path = asked.format(srv=srv)
    assert says in serve_err(srv, f"repofs serve {shlex.quote(path)}")


@pytest.mark.parametrize("command", [
    "rm -rf /srv", "sh -c 'repofs serve /'", "repofs serve a b", "cat /etc/shadow", "'unclosed",
])
def test_the_key_runs_nothing_but_serve(layout: tuple[Path, Path, Path], command: str) -> None:
    srv, _, _ = layout
    err = serve_err(srv, command)
    assert "repofs: error: serve: " in err and any(w in err for w in (
        "may only run", "more than one", "cannot parse")), err


def test_paths_inside_the_restriction_are_served(layout: tuple[Path, Path, Path]) -> None:
    srv, repo, _ = layout
    for asked in (str(repo), "web1", "alias", f"{srv}/alias", "./web1"):
        w = Wire(srv, command=f"repofs serve {shlex.quote(asked)}")
        assert w.hello()["repository"] is True, asked
        assert w.finish()[0] == 0
    # client options are not the client's to choose: --restrict-to-path / is ignored
    w = Wire(srv, command="repofs serve --restrict-to-path / /etc")
    w.send({"op": "hello", "v": 1})
    assert "outside the restricted path" in w.finish()[1]


def test_invalid_path_strings_are_refused() -> None:
    for bad in ("a\0b", "", "x/../y"):
        with pytest.raises(ServeRefused):
            select_path(bad, None, None)
        with pytest.raises(ServeRefused):
            select_path(None, "/dev/shm", f"repofs serve {shlex.quote(bad)}" if bad else "x")
    with pytest.raises(ServeRefused, match="not a directory"):
        select_path(None, "/nonexistent-restriction", None)


def test_the_client_sees_a_one_line_refusal(layout: tuple[Path, Path, Path],
                                            fake_ssh: Path, victim: Victim) -> None:
    srv, _, _ = layout
    client = Client(srv, victim.base / "c2", fake_ssh, url="ssh://web1.example/etc")
    r = client.run("snapshots", expect=2)
    assert r.err_lines == ["repofs: error: ssh://web1.example/etc: refused by the server: "
                           "/etc is outside the restricted path " + str(srv)], r


@pytest.mark.parametrize("what", ["data/ab", "snapshots", "tmp", "config"])
def test_symlinked_directories_in_the_repository_stop_the_server(victim: Victim,
                                                                  what: str) -> None:
    outside = victim.base / "planted-target"
    outside.mkdir()
    target = victim.restrict / what
    os.rename(target, victim.base / "moved-away")
    os.symlink(outside, target)
    err = serve_err(victim.restrict, f"repofs serve {victim.restrict}")
    assert "refusing to serve" in err and what in err and "symlink" in err, err
    assert os.listdir(outside) == []


def test_symlinked_or_special_objects_are_not_followed(victim: Victim) -> None:
    secret = victim.base / "secret"
    secret.write_bytes(b"not yours")
    snaps = sorted((victim.restrict / spec.NS_SNAPSHOTS).iterdir())
    os.unlink(snaps[0])
    os.symlink(secret, snaps[0])
    os.unlink(snaps[1])
    os.mkfifo(snaps[1])  # a read that followed it would hang
    w = Wire(victim.restrict)
    w.hello()
    for p, why in ((snaps[0], "symlink"), (snaps[1], "not a regular file")):
        for op in ({"op": "get", "offset": 0, "length": 100}, {"op": "stat"}):
            refused(w.ask({**op, "ns": spec.NS_SNAPSHOTS, "name": p.name}),
                    protocol.E_DAMAGED, why)
        refused(w.ask({"op": "put", "ns": spec.NS_SNAPSHOTS, "name": p.name, "size": 9,
                       "data": b"not yours"}), protocol.E_NAME_MISMATCH)
    listed = w.ask({"op": "list", "ns": spec.NS_SNAPSHOTS})
    assert listed["names"] == [] and listed["more"] is False
    w.finish()
    assert secret.read_bytes() == b"not yours"


def test_init_only_where_nothing_is(layout: tuple[Path, Path, Path]) -> None:
    srv, _, outside = layout
    w = Wire(srv, command="repofs serve new/sub")
    assert w.hello()["repository"] is False
    refused(w.ask({"op": "config"}), protocol.E_NO_REPOSITORY)
    refused(w.ask({"op": "list", "ns": spec.NS_SNAPSHOTS}), protocol.E_NO_REPOSITORY)
    assert w.ask({"op": "init", "config": b"\x80"})["ok"] is True
    refused(w.ask({"op": "init", "config": b"\x80"}), protocol.E_REPOSITORY_EXISTS)
    w.finish()
    assert (srv / "new" / "sub" / "config").read_bytes() == b"\x80"
    (srv / "junk").mkdir()
    (srv / "junk" / "file").write_bytes(b"x")
    w = Wire(srv, command="repofs serve junk")
    w.hello()
    refused(w.ask({"op": "init", "config": b"\x80"}), protocol.E_REPOSITORY_EXISTS)
    w.finish()
    assert os.listdir(srv / "junk") == ["file"] and os.listdir(outside / "repo") == []
