"""The victim of the attack suite: a repository behind ``repofs serve``, and the attacker's tools.

Every attack acts with a compromised client's full credentials: the client's "SSH key"
(here a stand-in ``ssh`` that runs ``repofs serve --restrict-to-path`` exactly as an
``authorized_keys`` forced command would, with the client's command line in
SSH_ORIGINAL_COMMAND) and the repository passphrase. Where an attack also needs raw
write access to the storage, it edits the files directly.

``Victim`` builds one pristine repository per test module (two snapshots of a small
source tree, the expected trees kept aside) and hands each test a private copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from repofs import spec
from repofs.model import SnapshotBody, SnapshotHead, encode_body, encode_head
from repofs.pack import BlobEntry, PackBuilder
from repofs.repository import Repository
from tests.integration.harness import PASSPHRASE, REPOFS, Cli, Result, assert_same_tree

FAKE_SSH = """#!/bin/sh
# Stands in for ssh + an authorized_keys forced command: the server side ignores what the
# client asked to run, except the path in SSH_ORIGINAL_COMMAND (the last argument).
for last; do :; done
SSH_ORIGINAL_COMMAND="$last" exec $FAKE_SSH_PREFIX {repofs} serve $FAKE_SSH_SERVE_FLAGS \\
    --restrict-to-path "$FAKE_SSH_RESTRICT"
"""


def write_fake_ssh(directory: Path) -> Path:
    path = directory / "fake-ssh"
    path.write_text(FAKE_SSH.format(repofs=REPOFS))
    path.chmod(0o755)
    return path


class Client(Cli):
    """The CLI of the compromised (or an honest) client, talking ssh:// through repofs serve."""

    def __init__(self, restrict: Path, cache: Path, fake_ssh: Path, serve_flags: str = "",
                 url: str | None = None) -> None:
        super().__init__(Path("/unused"), cache)
        self.restrict = restrict
        self.url = url or f"ssh://backup@web1.example{restrict}"
        self.extra = {"REPOFS_SSH": str(fake_ssh), "FAKE_SSH_RESTRICT": str(restrict),
                      "FAKE_SSH_SERVE_FLAGS": serve_flags, "FAKE_SSH_PREFIX": ""}

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return super().env({**self.extra, **(extra or {})})

    def run(self, command: str, *args, **kw) -> Result:  # type: ignore[override]
        kw.setdefault("repo", self.url)
        return super().run(command, *args, **kw)

    def restore_exact(self, snap: str, expected: Path, src: Path, target: Path,
                      *flags: str, expect: int = 0) -> None:
        """Restore ``snap`` (a backup of ``src``) and compare it, byte for byte and bit of
        metadata, with ``expected`` (a copy of ``src`` as it was then)."""
        self.run("restore", *flags, snap, "--target", target, expect=expect)
        assert_same_tree(expected, target / os.path.relpath(src, "/"))

    def attacker(self) -> Repository:
        """The repository opened in-process with the stolen passphrase, through repofs serve."""
        old = {k: os.environ.get(k) for k in self.extra}
        os.environ.update(self.extra)
        try:
            return Repository.open(self.url, PASSPHRASE.encode())
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def fingerprint(repo_dir: Path) -> dict[str, str]:
    """Every file of a repository and a hash of its bytes: what no attack may change."""
    out = {}
    for p in sorted(repo_dir.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(repo_dir))] = hashlib.blake2b(p.read_bytes()).hexdigest()
    return out


def assert_nothing_changed(before: dict[str, str], repo_dir: Path) -> None:
    after = fingerprint(repo_dir)
    changed = [k for k, v in before.items() if after.get(k) != v]
    assert not changed, f"existing objects changed or vanished: {changed}"


@dataclass
class Victim:
    """One private copy of the pristine repository, for one test."""

    base: Path
    restrict: Path
    client: Client
    snaps: list[str]
    expected: list[Path]
    src: Path
    before: dict[str, str] = field(default_factory=dict)

    def restores_exactly(self, *flags: str, newest_only: bool = False,
                         expect: int = 0) -> None:
        """The promise every attack must leave standing: every earlier snapshot restores.
        ``newest_only`` for attacks that only add objects: ``unchanged`` proves every
        existing byte intact, so one restore shows the additions block nothing."""
        pairs = list(zip(self.snaps, self.expected, strict=True))
        for i, (snap, want) in enumerate(pairs[-1:] if newest_only else pairs):
            target = self.base / f"restore-{i}-{len(list(self.base.iterdir()))}"
            self.client.restore_exact(snap, want, self.src, target, *flags, expect=expect)

    def unchanged(self) -> None:
        assert_nothing_changed(self.before, self.restrict)


Pristine = tuple[Path, list[str], list[Path], Path]


def build_pristine(base: Path, fake_ssh: Path) -> Pristine:
    """A repository with two snapshots of a small tree; the trees as they were, kept aside."""
    restrict = base / "srv" / "web1"
    restrict.mkdir(parents=True)
    client = Client(restrict, base / "cache", fake_ssh)
    client.init()
    src = base / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"generation 1\n")
    (src / "sub" / "data.bin").write_bytes(os.urandom(300_000))
    os.symlink("a.txt", src / "link")
    snaps, expected = [], []
    for gen in (1, 2):
        if gen == 2:
            (src / "a.txt").write_bytes(b"generation 2\n")
            (src / "sub" / "new.bin").write_bytes(os.urandom(50_000))
        snaps.append(client.create(src)["snapshot"])
        keep = base / f"expected{gen}" / "src"
        keep.parent.mkdir()
        subprocess.run(["cp", "-a", str(src), str(keep)], check=True)
        expected.append(keep)
    return restrict, snaps, expected, src


def copy_victim(pristine: Pristine, base: Path, fake_ssh: Path, name: str,
                serve_flags: str = "") -> Victim:
    restrict, snaps, expected, src = pristine
    mine = base / name
    shutil.copytree(restrict, mine / "srv" / "web1", symlinks=True)
    client = Client(mine / "srv" / "web1", mine / "cache", fake_ssh, serve_flags)
    v = Victim(mine, mine / "srv" / "web1", client, snaps, expected, src)
    v.before = fingerprint(v.restrict)
    return v


# -- crafting hostile objects with the stolen keys (repofs' own encoders) ----------------------
def put_snapshot(repo: Repository, head: SnapshotHead, body: SnapshotBody,
                 sealed: bytes | None = None) -> str:
    """A snapshot object with any head and body, sealed as SnapshotLog.commit seals one."""
    if sealed is None:
        inner = repo.new_cipher(spec.KIND_SNAPSHOT, spec.MODE_SEALED)
        sealed = inner.header + inner.seal(0, encode_body(head, body), b"snapshot body")
    outer = repo.new_cipher(spec.KIND_SNAPSHOT, spec.MODE_SHARED)
    return repo.put_object(spec.NS_SNAPSHOTS,
                           outer.header + outer.seal(0, encode_head(head, sealed), b"snapshot"))


def put_blobs(repo: Repository, blobs: list[tuple[bytes, int, bytes]],
              index: bool = True) -> tuple[str, list[BlobEntry]]:
    """A pack holding (claimed id, type, plaintext) blobs, and an index segment naming it."""
    b = PackBuilder()
    for blob_id, blob_type, plain in blobs:
        b.add(blob_id, blob_type, spec.CODEC_NONE, plain, len(plain))
    data, entries = b.seal(repo.new_cipher(spec.KIND_PACK, spec.MODE_SEALED))
    pack = repo.put_object(spec.NS_DATA, data)
    if index:
        repo.write_index_segment([(pack, entries)])
    return pack, entries


def raw_tree(entries: list[dict]) -> bytes:
    """A tree blob as a hostile writer may encode it: no sorting, no validation."""
    return spec.pack({"v": spec.FORMAT_VERSION, "e": entries})


def file_entry(name: bytes, chunk: bytes, size: int, **extra: object) -> dict:
    return {"n": name, "t": "f", "m": 0o644, "u": 0, "g": 0, "mt": 0, "ct": 0, "s": size,
            "c": [[chunk, size]], **extra}


def body_for(tree: bytes, host: str = "web1") -> SnapshotBody:
    return SnapshotBody(tree=tree, paths=(b"/planted",), host=host, user="root", tags=(),
                        name=None, hardlinks={}, stats={})


__all__ = ["REPOFS", "Client", "Victim", "build_pristine", "copy_victim", "write_fake_ssh"]
