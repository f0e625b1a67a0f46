"""Audit events: who opened which repository with which key, and what they took out of it.

Why it exists: after an incident an administrator must be able to answer "which key
opened this repository, what was restored or mounted, by whom and when" from the
machine's ordinary log (journald or syslog), without trusting the repository itself.

Why it is shaped like this:

- **No secrets, by construction.** Field values are ``str``, ``int``, ``bool``, ``None``,
  paths, or lists of those. ``bytes`` raise ``TypeError``: in repofs keys, passphrases and
  file contents are ``bytes``, so they cannot slip in by accident; field names that sound
  like secrets (passphrase, password, secret, token) raise ``ValueError``. Identifiers
  that are public by design are what an event carries: the repository id, the key id
  (the key file's object name), snapshot ids, paths and counts.
- **One line per event, unforgeable by file names.** Values that are not plain words are
  JSON-quoted with ``ensure_ascii``, so a file name with a newline or an escape sequence
  cannot start a fake second record or paint the terminal of whoever reads the log.
- **The local syslog socket, nothing else.** Each event is one RFC 3164 datagram on
  ``/dev/log`` (journald serves that socket too, and adds the trusted ``_UID``, ``_PID``
  and ``_COMM`` fields of the sender), facility ``authpriv``, identifier ``repofs-audit``:
  ``journalctl -t repofs-audit`` or ``/var/log/auth.log`` show them. The environment
  variable ``REPOFS_AUDIT_SOCKET`` names another datagram socket (tests, containers).
- **Best effort, like syslog(3).** No socket means no-op; a failed send is ignored.
  An audit record is evidence for the administrator, not a gate: the user who runs
  repofs controls the process, so it is no defence against that user, and a backup
  must not fail because a log daemon is down.

The library stays free of printing: this module writes to a socket only, and imports
nothing from repofs, so every layer may call it (``repofs serve`` refusals, later).
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import re
import socket
import time
from collections.abc import Sequence
from pathlib import PurePath

__all__ = ["DEFAULT_SOCKET", "ENV_SOCKET", "IDENT", "FieldValue", "event", "format_line", "refusal"]

DEFAULT_SOCKET = "/dev/log"
ENV_SOCKET = "REPOFS_AUDIT_SOCKET"
IDENT = "repofs-audit"

_LOG_AUTHPRIV = 10 << 3  # facility authpriv: security records, readable by admins only
_LOG_WARNING, _LOG_NOTICE = 4, 5
_MAX_LINE = 4000  # below the 8 KiB that rsyslog accepts by default, with room for the header
_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}\Z")
_PLAIN = re.compile(r"[A-Za-z0-9_.,:/@+=-]{1,4000}\Z")
_SECRET_WORDS = ("passphrase", "password", "secret", "token")

Scalar = str | int | bool | None | PurePath
FieldValue = Scalar | Sequence[str | int]


def event(name: str, /, **fields: FieldValue) -> None:
    """Record that ``name`` happened (``restore``, ``mount``, ``create``, ...), at notice level.

    Call it after the action succeeded, with the repository id and key id among the
    fields: ``audit.event("restore", repo=r.id, key=key_id, snapshot=s.id, target=t)``.
    """
    _send(_LOG_NOTICE, name, fields)


def refusal(name: str, /, reason: str, **fields: FieldValue) -> None:
    """Record that ``name`` was refused or failed for ``reason``, at warning level."""
    _send(_LOG_WARNING, name, {"outcome": "refused", "reason": reason, **fields})


def format_line(name: str, fields: dict[str, FieldValue]) -> str:
    """The message text: ``event=NAME uid=N user=U key=value ...``, one line, ASCII only."""
    _check_name(name)
    parts = [f"event={name}", f"uid={os.getuid()}", f"user={_render(_user_name())}"]
    for key, value in fields.items():
        _check_name(key)
        if any(word in key for word in _SECRET_WORDS):
            raise ValueError(f"audit field {key!r} sounds like a secret; audit records hold ids")
        parts.append(f"{key}={_render(value)}")
    line = " ".join(parts)
    if len(line) > _MAX_LINE:
        line = line[: _MAX_LINE - 12] + " [truncated]"
    return line


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"bad audit name {name!r}: lower-case words, digits, '_', '.', '-'")


def _render(value: FieldValue) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        raise TypeError("audit fields take text ids, never bytes (keys and data are bytes)")
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, PurePath):
        value = os.fspath(value)
    if isinstance(value, str):
        return value if _PLAIN.match(value) else json.dumps(value, ensure_ascii=True)
    if isinstance(value, Sequence):
        items = [_render_item(v) for v in value]
        return json.dumps(items, ensure_ascii=True, separators=(",", ":"))
    raise TypeError(f"audit field of type {type(value).__name__} is not allowed")


def _render_item(value: str | int) -> str | int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"audit list item of type {type(value).__name__} is not allowed")
    return value


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "-"


def _send(severity: int, name: str, fields: dict[str, FieldValue]) -> None:
    line = format_line(name, fields)  # programming errors (bytes, bad names) raise here
    path = os.environ.get(ENV_SOCKET) or DEFAULT_SOCKET
    stamp = time.strftime("%b %e %H:%M:%S")
    datagram = f"<{_LOG_AUTHPRIV | severity}>{stamp} {IDENT}[{os.getpid()}]: {line}".encode(
        "ascii", "replace")
    try:
        _deliver(path, datagram)
    except OSError:
        pass  # best effort: no log daemon (ENOENT), a stalled one, or a socket we may not use


def _deliver(path: str, datagram: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)  # a stalled log daemon must not stall a backup
        try:
            s.sendto(datagram, path)
            return
        except OSError as e:
            if e.errno != errno.EPROTOTYPE:  # a stream socket (some rsyslog set-ups)
                raise
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        s.connect(path)
        s.sendall(datagram + b"\0")
