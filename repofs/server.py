"""``repofs serve``: the server end of an ``ssh://`` repository, append-only by construction.

Why it exists: a backup client that can reach the repository's files can
delete them. Behind ``repofs serve`` (an SSH forced command), the client can
only speak the protocol of ``repofs.protocol``, and that protocol has no verb
that removes or changes anything: create-new (through ``LocalStore.put``,
which links a complete file to a name that must not exist), read, list and
stat. The server holds no keys; it checks what it can without them: every
name is 64 hex digits in a known namespace, and every object's bytes hash to
its name (unkeyed BLAKE3, repofs-format(5)), so nothing can be stored under a
name it does not own. ``--immutable`` adds the file system's immutable flag
to every completed object (see ``repofs.immutable``).

It uses ``LocalStore`` and nothing above layer 1. Every refusal goes back to
the client as a precise error and to the audit log.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from repofs import audit, crypto, immutable, protocol
from repofs.errors import IntegrityError, ObjectExists, RepositoryExists
from repofs.protocol import ProtocolError, ok, refusal
from repofs.spec import CONFIG_NAME, MAX_OBJECT, NAMESPACES
from repofs.store import LocalStore, NewObject, valid_name


class ServeRefused(Exception):
    """The server will not start: the path, the restriction or the flag cannot be honoured."""


def _clean(path: str) -> str:
    if not path or "\0" in path:
        raise ServeRefused(f"invalid repository path {path!r}")
    if ".." in path.split("/"):
        raise ServeRefused(f"repository path {path!r} contains '..'")
    return path


def _path_from_command(command: str) -> str | None:
    """The repository path a client asked for in SSH_ORIGINAL_COMMAND (``repofs serve PATH``);
    options the client passed are ignored: only the forced command chooses them."""
    try:
        words = shlex.split(command)
    except ValueError:
        raise ServeRefused("cannot parse the command the client sent") from None
    if "serve" not in words:
        raise ServeRefused(f"this key may only run 'repofs serve' (the client asked for "
                           f"{command[:200]!r})")
    args, rest = [], iter(words[words.index("serve") + 1:])
    for w in rest:
        if w == "--restrict-to-path":
            next(rest, None)  # its value is no repository path
        elif not w.startswith("-"):
            args.append(w)
    if len(args) > 1:
        raise ServeRefused("the client asked for more than one repository path")
    return args[0] if args else None


def select_path(path: str | None, restrict: str | None, original_command: str | None) -> Path:
    """The repository directory to serve: ``path``, or (under a forced command) the path the
    client asked for, which must lie inside ``restrict`` after every symlink is resolved."""
    if restrict is None:
        if path is None:
            raise ServeRefused("give the repository PATH, or --restrict-to-path")
        return Path(os.path.realpath(_clean(path)))
    base = Path(os.path.realpath(_clean(restrict)))
    if not base.is_dir():
        raise ServeRefused(f"the restricted path {restrict} is not a directory")
    wanted = path if path is not None else (
        _path_from_command(original_command) if original_command else None)
    if wanted is None:
        return base
    real = Path(os.path.realpath(base / _clean(wanted)))  # an absolute `wanted` replaces base
    if real != base and not real.is_relative_to(base):
        raise ServeRefused(f"{wanted} is outside the restricted path {restrict}")
    return real


class Server:
    """One connection: frames in on ``inp``, answers out on ``out``, until end of stream."""

    def __init__(self, root: Path, inp: BinaryIO, out: BinaryIO,
                 make_immutable: bool = False) -> None:
        self.root = root
        self.inp, self.out = inp, out
        self.immutable = make_immutable
        self.store: LocalStore | None = None
        self._greeted = False
        self._ops: dict[str, Callable[[dict[str, Any]], None]] = {
            "hello": self._hello, "init": self._init, "config": self._config,
            "put": self._put, "get": self._get, "stat": self._stat, "list": self._list,
        }

    def prepare(self) -> None:
        """Checks before the first request: a sound layout, a working immutable flag."""
        if (self.root / CONFIG_NAME).exists() or (self.root / CONFIG_NAME).is_symlink():
            store = LocalStore(self.root)
            try:
                store.verify_layout()
            except IntegrityError as e:
                raise ServeRefused(f"refusing to serve {self.root}: {e}") from None
            self.store = store
        if self.immutable:
            where = self.root / "tmp" if self.store else _existing_parent(self.root)
            try:
                immutable.probe(where)
            except (immutable.ImmutableUnavailable, OSError) as e:
                raise ServeRefused(f"--immutable: {e}") from None

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> bool:
        """Serve until the client closes the stream (True) or breaks the protocol (False)."""
        while True:
            try:
                msg = protocol.read_frame(self.inp)
                if msg is None:
                    return True
                self._dispatch(msg)
            except _Fatal as e:  # the stream cannot be trusted to be in step any more
                self._refuse(e.op, e.code, e.message)
                return False
            except ProtocolError as e:
                self._refuse("frame", e.code, e.message)
                return False

    def _dispatch(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        name = op if isinstance(op, str) and op in protocol.OPS else "?"
        try:
            handler = self._ops.get(op) if isinstance(op, str) else None
            if op == "data":
                raise ProtocolError(protocol.E_PROTOCOL, "a data frame outside a put")
            if handler is None:
                raise ProtocolError(protocol.E_UNKNOWN_OP,
                                    f"repofs serve has no operation {str(op)[:64]!r}: objects "
                                    "can only be created, read, listed and stat'ed")
            if not self._greeted and op != "hello":
                raise ProtocolError(protocol.E_PROTOCOL, "the first request must be hello")
            handler(msg)
        except _Fatal:
            raise
        except ProtocolError as e:
            self._refuse(name, e.code, e.message)
        except FileNotFoundError:
            self._refuse(name, protocol.E_NOT_FOUND, "no such object")
        except ObjectExists as e:
            self._refuse(name, protocol.E_EXISTS, str(e))
        except RepositoryExists:
            self._refuse(name, protocol.E_REPOSITORY_EXISTS,
                         "a repository (or other files) already exists there")
        except IntegrityError as e:
            self._refuse(name, protocol.E_DAMAGED, str(e))
        except OSError as e:
            self._refuse(name, protocol.E_IO, e.strerror or type(e).__name__)

    def _send(self, msg: dict[str, Any]) -> None:
        protocol.write_frame(self.out, msg)

    def _refuse(self, op: str, code: str, message: str) -> None:
        audit.refusal("serve", reason=code, op=op, detail=message[:300], path=self.root)
        try:
            self._send(refusal(code, message))
        except (OSError, ValueError):
            pass  # the client is gone

    # -- operations ---------------------------------------------------------------------
    def _need_store(self) -> LocalStore:
        if self.store is None:
            raise ProtocolError(protocol.E_NO_REPOSITORY, "no repofs repository here")
        return self.store

    def _hello(self, msg: dict[str, Any]) -> None:
        v = protocol.integer(msg, "v", 0, 1 << 16)
        if v != protocol.VERSION:
            raise ProtocolError(protocol.E_VERSION, f"protocol version {v} is not spoken here "
                                                    f"(this server speaks {protocol.VERSION})")
        self._greeted = True
        self._send(ok(v=protocol.VERSION, ops=[o for o in protocol.OPS if o != "data"],
                      repository=self.store is not None, data_part=protocol.DATA_PART))

    def _init(self, msg: dict[str, Any]) -> None:
        config = protocol.blob(msg, "config", protocol.MAX_CONFIG)
        if self.store is not None:
            raise RepositoryExists
        self.store = LocalStore.create(self.root, config)
        self._seal(self.root / CONFIG_NAME)
        self._send(ok())

    def _config(self, msg: dict[str, Any]) -> None:
        self._send(ok(data=self._need_store().read_config()))

    def _object(self, msg: dict[str, Any]) -> tuple[str, str]:
        ns = protocol.text(msg, "ns", 32)
        if ns not in NAMESPACES:
            raise ProtocolError(protocol.E_BAD_NAMESPACE, f"no namespace {ns!r} (only "
                                                          f"{', '.join(NAMESPACES)})")
        name = protocol.text(msg, "name", 128)
        if not valid_name(name):
            raise ProtocolError(protocol.E_BAD_NAME, f"object name {name!r} is not 64 "
                                                     "lowercase hex digits")
        return ns, name

    def _put(self, msg: dict[str, Any]) -> None:
        store = self._need_store()
        ns, name = self._object(msg)
        size = protocol.integer(msg, "size")
        if size > MAX_OBJECT:
            raise ProtocolError(protocol.E_TOO_LARGE, f"object of {size} bytes is over the "
                                                      f"limit of {MAX_OBJECT}")
        first = protocol.blob(msg, "data")
        if len(first) > size:
            raise ProtocolError(protocol.E_PROTOCOL, "more data than the declared size")
        try:
            new = store.new_object(ns, name)
        except OSError:
            for _ in self._parts(first, size):  # read the rest: keep the stream in step
                pass
            raise
        with new:  # bytes go to disk as they come, never gathered in memory; the
            # object has its name only once they hash to it
            digest = crypto.object_name_of(_written(new, self._parts(first, size)))
            if not crypto.same(digest.encode(), name.encode()):
                raise ProtocolError(protocol.E_NAME_MISMATCH,
                                    f"{ns}/{name}: the bytes do not hash to this name")
            created = new.commit()
        self._seal(store.path(ns, name))
        self._send(ok(created=created))

    def _parts(self, first: bytes, size: int) -> Iterator[bytes]:
        """The pieces of a put's object, ``size`` bytes in all: the first frame's, then
        the data frames the client sends without waiting."""
        yield first
        got = len(first)
        if got < size:
            self._send(ok(more=True))
        while got < size:
            part = self._continuation()
            if got + len(part) > size:
                raise _Fatal("put", protocol.E_PROTOCOL, "more data than the declared size")
            got += len(part)
            yield part

    def _continuation(self) -> bytes:
        try:
            msg = protocol.read_frame(self.inp)
        except ProtocolError as e:
            raise _Fatal("put", e.code, e.message) from None
        if msg is None or msg.get("op") != "data":
            raise _Fatal("put", protocol.E_PROTOCOL, "a put was not followed by its data")
        try:
            return protocol.blob(msg, "data")
        except ProtocolError as e:
            raise _Fatal("put", e.code, e.message) from None

    def _seal(self, path: Path) -> None:
        if self.immutable:
            immutable.make_immutable(path)

    def _get(self, msg: dict[str, Any]) -> None:
        store = self._need_store()
        ns, name = self._object(msg)
        offset = protocol.integer(msg, "offset")
        length = protocol.integer(msg, "length")
        if length > protocol.DATA_PART:
            raise ProtocolError(protocol.E_TOO_LARGE, f"ranges are limited to "
                                                      f"{protocol.DATA_PART} bytes")
        size = store.size(ns, name)
        data = store.get_range(ns, name, offset, length) if offset < size else b""
        self._send(ok(data=data, size=size))

    def _stat(self, msg: dict[str, Any]) -> None:
        store = self._need_store()
        ns, name = self._object(msg)
        self._send(ok(size=store.size(ns, name)))

    def _list(self, msg: dict[str, Any]) -> None:
        store = self._need_store()
        ns = protocol.text(msg, "ns", 32)
        if ns not in NAMESPACES:
            raise ProtocolError(protocol.E_BAD_NAMESPACE, f"no namespace {ns!r}")
        batch: list[str] = []
        for name in store.list(ns):
            batch.append(name)
            if len(batch) == protocol.LIST_BATCH:
                self._send(ok(names=batch, more=True))
                batch = []
        self._send(ok(names=batch, more=False))


class _Fatal(Exception):
    """A violation inside a put: the rest of the stream is out of step; end the connection."""

    def __init__(self, op: str, code: str, message: str) -> None:
        super().__init__(message)
        self.op, self.code, self.message = op, code, message


def _written(new: NewObject, parts: Iterable[bytes]) -> Iterator[bytes]:
    """Each part, once it is written to ``new``. A write that fails is raised after the
    last part: the client sends them all without waiting, so all are read, to keep the
    stream in step."""
    failed: OSError | None = None
    for part in parts:
        if failed is None:
            try:
                new.write(part)
            except OSError as e:
                failed = e
        yield part
    if failed is not None:
        raise failed


def _existing_parent(path: Path) -> Path:
    while not path.is_dir():
        path = path.parent
    return path


__all__ = ["ServeRefused", "Server", "select_path"]
