"""The client end of an ``ssh://[user@]host[:port]/path`` repository.

Why: a backup client should hold no more than create-and-read on its
repository. ``SshStore`` speaks ``repofs.protocol`` to ``repofs serve`` through
the system ``ssh`` binary (so the user's keys, agent, ``~/.ssh/config`` and
known hosts apply) and offers exactly ``WriterStore``: put, get, get_range,
size, exists, list, read_config. The server is no more trusted than storage:
every answer is size-capped by the framing, names it lists are checked, and
what it returns is verified by the repository (hashes and AEAD) as local
bytes are.

``REPOFS_SSH`` changes the command: words starting with ``-`` are options for
``ssh`` (``-i key -p 2222``); otherwise the first word is the program. It is
split with shlex and run without a shell. ``REPOFS_REMOTE_COMMAND`` names the
remote ``repofs`` (ignored by a forced command).
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import subprocess
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

from repofs import protocol
from repofs.errors import (
    IntegrityError,
    ObjectExists,
    RemoteError,
    RepositoryExists,
    RepositoryNotFound,
)
from repofs.protocol import ProtocolError
from repofs.spec import MAX_OBJECT
from repofs.store import valid_name

T = TypeVar("T")
_SERVER_SAYS = "repofs: error: serve: "  # how repofs serve words a refusal at start
_HOST_RE = re.compile(r"\A[A-Za-z0-9_.:%-]{1,253}\Z")
_USER_RE = re.compile(r"\A[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}\Z")


@dataclass(frozen=True)
class SshLocation:
    """Where an ssh:// repository lives; ``path`` is absolute, or relative to the login
    directory (``ssh://host/./backups``), or empty (the forced command's directory)."""

    host: str
    path: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        who = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        path = self.path if self.path.startswith("/") else f"/./{self.path}" if self.path else ""
        return f"ssh://{who}{host}{port}{path}"


def parse_url(url: str) -> SshLocation:
    """Parse ``ssh://[user@]host[:port]/path``; refuse anything ssh could read as an option."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise RepositoryNotFound(f"invalid repository location {url!r}: {e}") from None
    if parts.scheme != "ssh" or parts.query or parts.fragment or parts.password:
        raise RepositoryNotFound(f"invalid repository location {url!r}: use "
                                 "ssh://[user@]host[:port]/path")
    host, user = parts.hostname or "", parts.username
    if not _HOST_RE.match(host) or host.startswith("-"):
        raise RepositoryNotFound(f"invalid host in repository location {url!r}")
    if user is not None and not _USER_RE.match(unquote(user)):
        raise RepositoryNotFound(f"invalid user in repository location {url!r}")
    path = unquote(parts.path)
    if path.startswith("/./"):
        path = path[3:]
    if "\0" in path or "\n" in path:
        raise RepositoryNotFound(f"invalid path in repository location {url!r}")
    return SshLocation(host=host, path=path, user=unquote(user) if user else None, port=port)


def ssh_argv(loc: SshLocation) -> list[str]:
    """The command line that starts ``repofs serve`` on the other end (no shell involved)."""
    words = shlex.split(os.environ.get("REPOFS_SSH", ""))
    command = ["ssh", *words] if not words or words[0].startswith("-") else words
    if loc.port:
        command += ["-p", str(loc.port)]
    remote = shlex.split(os.environ.get("REPOFS_REMOTE_COMMAND", "") or "repofs")
    line = " ".join(shlex.quote(w) for w in [*remote, "serve", *([loc.path] if loc.path else [])])
    dest = f"{loc.user}@{loc.host}" if loc.user else loc.host
    return [*command, "--", dest, line]


class SshStore:
    """``WriterStore`` over one ssh connection; requests are serialised by a lock."""

    fork_safe = False  # a forked copy would talk over the same connection

    def __init__(self, loc: SshLocation) -> None:
        self.location = loc
        self._lock = threading.Lock()
        self._stderr: deque[str] = deque(maxlen=8)
        try:
            self._proc = subprocess.Popen(ssh_argv(loc), stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            raise RemoteError(f"{loc}: cannot run ssh: {e.strerror}") from None
        self._reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._reader.start()
        self._forked = [False]  # shared with the finalizer, which must not hold self
        self._finalizer = weakref.finalize(self, _hang_up, self._proc, self._forked)
        _LIVE.add(self)
        hello = self._call({"op": "hello", "v": protocol.VERSION}, "connect")
        if self._field(protocol.integer, hello, "v") != protocol.VERSION:
            raise RemoteError(f"{loc}: the server speaks another protocol version")
        self.has_repository = hello.get("repository") is True

    @classmethod
    def open(cls, loc: SshLocation) -> SshStore:
        store = cls(loc)
        if not store.has_repository:
            store.close()
            raise RepositoryNotFound(f"no repofs repository at {loc}")
        return store

    @classmethod
    def create(cls, loc: SshLocation, config: bytes) -> SshStore:
        store = cls(loc)
        store._call({"op": "init", "config": config}, "init")
        return store

    def close(self) -> None:
        self._finalizer()

    # -- the link -------------------------------------------------------------------------
    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        for raw in self._proc.stderr:
            line = raw.decode("utf-8", "replace").strip()
            if line and not line.startswith("Warning: Permanently added"):
                self._stderr.append(line[:300])

    def _lost(self, what: str) -> RemoteError:
        try:
            rc = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        self._reader.join(timeout=2)
        said = self._stderr[-1] if self._stderr else (
            f"ssh exited with status {rc}" if rc is not None else what)
        if said.startswith(_SERVER_SAYS):
            return RemoteError(f"{self.location}: refused by the server: "
                               f"{said[len(_SERVER_SAYS):]}")
        return RemoteError(f"{self.location}: connection failed: {said}")

    def _send(self, msg: dict[str, Any]) -> None:
        try:
            protocol.write_frame(cast(IO[bytes], self._proc.stdin), msg)
        except (BrokenPipeError, ValueError, OSError):
            raise self._lost("the connection closed") from None

    def _receive(self, what: str) -> dict[str, Any]:
        try:
            msg = protocol.read_frame(cast(IO[bytes], self._proc.stdout))
        except ProtocolError as e:
            raise RemoteError(f"{self.location}: bad answer from the server: {e}") from None
        except OSError:
            msg = None
        if msg is None:
            raise self._lost(what)
        if msg.get("ok") is True:
            return msg
        raise self._refused(msg, what)

    def _refused(self, msg: dict[str, Any], what: str) -> Exception:
        code, text = str(msg.get("error"))[:64], str(msg.get("message"))[:1000]
        if code == protocol.E_NOT_FOUND:
            return FileNotFoundError(errno.ENOENT, f"{what}: {text}")
        if code == protocol.E_EXISTS:
            return ObjectExists(text)
        if code == protocol.E_NO_REPOSITORY:
            return RepositoryNotFound(f"no repofs repository at {self.location}")
        if code == protocol.E_REPOSITORY_EXISTS:
            return RepositoryExists(f"{self.location}: {text}")
        if code == protocol.E_DAMAGED:
            return IntegrityError("object", what, f"the server found it damaged ({text})")
        return RemoteError(f"{self.location}: the server refused {what}: {text} [{code}]")

    def _field(self, get: Callable[..., T], msg: dict[str, Any], *args: Any) -> T:
        """A typed field of an answer; a malformed answer is the server's fault, said so."""
        try:
            return get(msg, *args)
        except ProtocolError as e:
            raise RemoteError(f"{self.location}: bad answer from the server: {e}") from None

    def _call(self, msg: dict[str, Any], what: str) -> dict[str, Any]:
        with self._lock:
            self._send(msg)
            return self._receive(what)

    # -- WriterStore ----------------------------------------------------------------------
    def put(self, namespace: str, name: str, data: bytes | memoryview) -> bool:
        view = memoryview(data).cast("B")
        part = protocol.DATA_PART
        what = f"put {namespace}/{name}"
        with self._lock:
            self._send({"op": "put", "ns": namespace, "name": name, "size": len(view),
                        "data": bytes(view[:part])})
            if len(view) > part:
                self._receive(what)  # "more": the server accepted the name and size
                for at in range(part, len(view), part):
                    self._send({"op": "data", "data": bytes(view[at:at + part])})
            return self._receive(what).get("created") is True

    def _range(self, namespace: str, name: str, offset: int, length: int) -> tuple[bytes, int]:
        msg = self._call({"op": "get", "ns": namespace, "name": name, "offset": offset,
                          "length": length}, f"get {namespace}/{name}")
        data = self._field(protocol.blob, msg, "data")
        return data[:length], self._field(protocol.integer, msg, "size")

    def get(self, namespace: str, name: str) -> bytes:
        first, size = self._range(namespace, name, 0, protocol.DATA_PART)
        if size > MAX_OBJECT:
            raise IntegrityError(namespace, name, "object larger than any repofs writes")
        parts = [first]
        got = len(first)
        while got < size:
            part, _ = self._range(namespace, name, got, min(protocol.DATA_PART, size - got))
            if not part:
                break  # shorter than it said: the hash check of the caller will fail
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def get_range(self, namespace: str, name: str, offset: int, length: int) -> bytes:
        parts: list[bytes] = []
        while length > 0:
            part, _ = self._range(namespace, name, offset, min(protocol.DATA_PART, length))
            if not part:
                break
            parts.append(part)
            offset += len(part)
            length -= len(part)
        return b"".join(parts)

    def size(self, namespace: str, name: str) -> int:
        msg = self._call({"op": "stat", "ns": namespace, "name": name},
                         f"stat {namespace}/{name}")
        return self._field(protocol.integer, msg, "size")

    def exists(self, namespace: str, name: str) -> bool:
        try:
            self.size(namespace, name)
            return True
        except FileNotFoundError:
            return False

    def list(self, namespace: str) -> Iterator[str]:
        names: list[str] = []
        with self._lock:
            self._send({"op": "list", "ns": namespace})
            while True:
                msg = self._receive(f"list {namespace}")
                batch = msg.get("names")
                if not isinstance(batch, list) or not all(
                        isinstance(n, str) and valid_name(n) for n in batch):
                    raise RemoteError(f"{self.location}: the server listed invalid names")
                names += batch
                if msg.get("more") is not True:
                    break
        return iter(names)

    def read_config(self) -> bytes:
        msg = self._call({"op": "config"}, "config")
        return self._field(protocol.blob, msg, "data", protocol.MAX_CONFIG)


_LIVE: weakref.WeakSet[SshStore] = weakref.WeakSet()


def _after_fork_in_parent() -> None:
    """A child (the ``repofs mount`` daemon) now shares the connection: from here on this
    process only lets go of its end, and never kills the ssh the child still uses."""
    for store in list(_LIVE):
        store._forked[0] = True


os.register_at_fork(after_in_parent=_after_fork_in_parent)


def _hang_up(proc: subprocess.Popen[bytes], forked: list[bool]) -> None:
    """End of stream tells the server to exit; give it a moment, then insist."""
    try:
        if proc.stdin is not None:
            proc.stdin.close()
    except OSError:
        pass
    if forked[0]:
        return
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


__all__ = ["SshLocation", "SshStore", "parse_url", "ssh_argv"]
