"""--host, --tag and --path through the real CLI: every command that takes a SNAPSHOT
chooses among the snapshots that match (``latest`` = the newest of them), a filter that
matches nothing and an explicit id that does not match are errors (exit 2), and a
write-only key, which cannot read host, tags or paths, is refused rather than answered
as if there were no filter."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import Cli, make_cli


@pytest.fixture(scope="module")
def three(shm_module_dir: Path) -> tuple[Cli, Path, Path, list[str]]:
    """s1: a, h1, daily; s2: b, h2, daily+db (one --tag a,b); s3: a again, h2, weekly."""
    a, b = shm_module_dir / "a", shm_module_dir / "b"
    a.mkdir()
    b.mkdir()
    (a / "who").write_text("a1")
    (b / "who").write_text("b")
    cli = make_cli(shm_module_dir)
    s1 = cli.create(a, "--host", "h1", "--tag", "daily")["snapshot"]
    s2 = cli.create(b, "--host", "h2", "--tag", "daily,db")["snapshot"]
    (a / "who").write_text("a3")
    s3 = cli.create(a, "--host", "h2", "--tag", "weekly")["snapshot"]
    return cli, a, b, [s1, s2, s3]


FILTERS = [  # (options, index of the snapshot 'latest' then names)
    (("--host", "h1"), 0), (("--tag", "daily"), 1), (("--host", "h2"), 2), ((), 2),
    (("--tag", "db,daily"), 1), (("--tag", "weekly", "--tag", "db"), 2),
    (("--host", "h1", "--host", "h2", "--tag", "daily"), 1),
    (("--path", "{a}"), 2), (("--path", "{b}"), 1), (("--path", "{a}", "--host", "h1"), 0),
]


def _opts(opts: tuple[str, ...], a: Path, b: Path) -> list[str]:
    return [o.format(a=a, b=b) for o in opts]


def test_ls_dump_restore_latest_choose_the_newest_that_matches(
        three: tuple[Cli, Path, Path, list[str]], shm_dir: Path) -> None:
    cli, a, b, ids = three
    sources = [(a, "a1"), (b, "b"), (a, "a3")]
    dumped: set[int] = set()
    for opts, want in FILTERS:
        o = _opts(opts, a, b)
        src, content = sources[want]
        listed = [e["path"] for e in cli.run("ls", "--json", *o, "latest").json_lines()]
        assert f"{src}/who" in listed and f"{b if src == a else a}/who" not in listed, opts
        if want in dumped:
            continue  # dump and restore: once per snapshot a filter chooses (keep it fast)
        dumped.add(want)
        assert cli.run("dump", *o, "latest", src / "who").out == content.encode(), opts
        target = shm_dir / f"t{want}"
        got = cli.run("restore", *o, "--json", "latest", "--target", target).json()
        assert isinstance(got, dict) and got["snapshot"] == ids[want]
        assert (target / str(src / "who").lstrip("/")).read_text() == content


def test_the_listing_and_the_other_commands_share_the_rule(
        three: tuple[Cli, Path, Path, list[str]]) -> None:
    cli, a, b, (s1, s2, s3) = three
    snaps = cli.snapshots()
    assert snaps[1]["tags"] == ["daily", "db"]  # create --tag daily,db: two tags
    assert [s["id"] for s in cli.snapshots("--tag", "db,daily")] == [s2]
    assert [s["id"] for s in cli.snapshots("--tag", "daily,weekly")] == []
    assert [s["id"] for s in cli.snapshots("--path", a, "--host", "h2")] == [s3]
    found = cli.run("find", "--json", "--host", "h2", "who").json()
    assert isinstance(found, list) and [f["snapshot"] for f in found] == [s2, s3]
    stats = cli.run("stats", "--json", "--tag", "daily").json()
    assert isinstance(stats, dict) and [s["id"] for s in stats["snapshots"]] == [s1, s2]
    assert cli.run("stats", "--json").json()["snapshots"] == []  # type: ignore[index]
    d = cli.run("diff", "--json", "--path", a, s1[:8], "latest").json()
    assert isinstance(d, dict) and (d["snapshot1"], d["snapshot2"]) == (s1, s3)
    d = cli.run("diff", "--json", "--host", "h1", s1, "latest").json()
    assert isinstance(d, dict) and d["snapshot2"] == s1  # the latest of h1 is s1


def test_nothing_matches_and_an_id_that_does_not_match(
        three: tuple[Cli, Path, Path, list[str]], shm_dir: Path) -> None:
    cli, a, b, (s1, s2, s3) = three
    for cmd in (["ls", "latest"], ["dump", "latest", str(a / "who")],
                ["restore", "latest", "--target", str(shm_dir / "never")],
                ["diff", "latest", "latest"], ["stats", "latest"], ["find", "-s", "latest", "who"],
                ["mount", "--snapshot", "latest", str(shm_dir)]):
        r = cli.run(cmd[0], "--host", "nosuch", *cmd[1:], expect=2)
        assert r.err_lines == ["repofs: error: no snapshot matches --host nosuch"], r
    assert not (shm_dir / "never").exists()
    r = cli.run("ls", "--host", "h2", s1[:8], expect=2)
    assert r.err_lines == [f"repofs: error: snapshot {s1[:8]} does not match --host h2"]
    r = cli.run("restore", "--tag", "weekly", f"{s2}:{b}", "--target", shm_dir / "no", expect=2)
    assert "does not match --tag weekly" in r.err
    assert not (shm_dir / "no").exists()
    assert cli.run("dump", "--host", "h1", s1, a / "who").out == b"a1"
    r = cli.run("mount", "--tag", "daily", shm_dir, expect=2)  # the layout shows every one
    assert "--host, --tag and --path choose the --snapshot to mount" in r.err


def test_a_write_only_key_is_refused_a_filter(three: tuple[Cli, Path, Path, list[str]]) -> None:
    cli = three[0]
    cli.run("key", "add", "--write-only", env={"REPOFS_NEW_PASSPHRASE": "writer only"})
    writer = {"REPOFS_PASSPHRASE": "writer only"}
    assert len(cli.run("snapshots", "--json", env=writer).json()) == 3  # type: ignore[arg-type]
    for cmd in (["snapshots"], ["ls", "latest"], ["stats"], ["find", "who"],
                ["restore", "latest", "--target", "/nonexistent/x"]):
        r = cli.run(cmd[0], "--host", "h1", *cmd[1:], env=writer, expect=2)
        assert len(r.err_lines) == 1 and "write-only" in r.err_lines[0], r
        assert "--host, --tag and --path cannot be used" in r.err_lines[0]
