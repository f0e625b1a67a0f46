"""A key file out of the repository and back (``repofs key export`` / ``key import``).

Why: a repository whose key files are lost or destroyed is unreadable for good, and a
key file is small. Exported, it is still sealed under its passphrase (Argon2id), so a
copy on paper or in a safe protects what the passphrase protects. Two forms:

- text: the key file in base64 between BEGIN/END lines, with the repository id and
  the key file's name (the hash of its bytes, so any damage is found on import);
- paper: numbered lines of hex in groups of four, each ending in a checksum of its
  number and digits, so a person typing it back learns at once which line is wrong.

Import takes either form, checks that the text names this repository and that the
key file opens with the passphrase, and writes it with the writer's create-only
``put``: it works through ``repofs serve`` too, and can never replace a file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from repofs import crypto, keys, spec
from repofs.config import decode_config
from repofs.errors import BadKeyFile, IntegrityError, WrongPassphrase
from repofs.location import RepoLocation, open_store
from repofs.repository import Repository

BEGIN, END = "-----BEGIN REPOFS KEY FILE-----", "-----END REPOFS KEY FILE-----"
PAPER_TITLE = "repofs key file, paper form 1: type each line back with its last group"
_BYTES_PER_LINE = 16
_PAPER = re.compile(r"\A\s*(\d{1,4})\s*:\s*([0-9a-fA-F ]+?)\s+([0-9a-fA-F]{4})\s*\Z")
MAX_TEXT = 64 * 1024  # a key file is under 4 KiB; never parse more than this


@dataclass(frozen=True)
class ExportedKey:
    repo_id: bytes
    name: str  # the key file's object name: the hash of ``data``
    data: bytes


def export(repo: Repository) -> ExportedKey:
    """The key file this repository was opened with, verified against its name."""
    name = repo.keys.key_name
    data = repo.get_verified(spec.NS_KEYS, name, "key file")
    return ExportedKey(repo.keys.repo_id, name, data)


def to_text(key: ExportedKey) -> str:
    body = base64.b64encode(key.data).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "\n".join([BEGIN, f"repository: {key.repo_id.hex()}", f"key: {key.name}", "",
                      *lines, END]) + "\n"


def _checksum(number: int, digits: str) -> str:
    return hashlib.blake2b(f"{number}:{digits}".encode(), digest_size=2).hexdigest()


def paper_line(number: int, chunk: bytes) -> str:
    digits = chunk.hex()
    groups = " ".join(digits[i:i + 4] for i in range(0, len(digits), 4))
    return f"{number:03d}: {groups}  {_checksum(number, digits)}"


def to_paper(key: ExportedKey) -> str:
    """Lines 1 and 2 hold the repository id, 3 and 4 the key file's name, the rest the
    key file; every line is checked alone, the whole by the name."""
    payload = key.repo_id + bytes.fromhex(key.name) + key.data
    rows = [payload[i:i + _BYTES_PER_LINE] for i in range(0, len(payload), _BYTES_PER_LINE)]
    return "\n".join([PAPER_TITLE, *(paper_line(n, r) for n, r in enumerate(rows, 1))]) + "\n"


def check_paper_line(line: str) -> tuple[int, bytes]:
    """(number, bytes) of one typed paper line; ValueError says what is wrong with it."""
    m = _PAPER.match(line)
    if m is None:
        raise ValueError("not a line of the paper form ('NNN: xxxx xxxx ...  cccc')")
    number, digits = int(m.group(1)), m.group(2).replace(" ", "").lower()
    if len(digits) % 2 or _checksum(number, digits) != m.group(3).lower():
        raise ValueError(f"line {number} has a typing error (its checksum does not match)")
    return number, bytes.fromhex(digits)


def _from_paper(lines: list[str]) -> ExportedKey:
    rows: dict[int, bytes] = {}
    for line in lines:
        if not line.strip() or line.strip() == PAPER_TITLE:
            continue
        try:
            number, chunk = check_paper_line(line)
        except ValueError as e:
            raise BadKeyFile(f"key import: {e}") from None
        if number in rows and rows[number] != chunk:
            raise BadKeyFile(f"key import: line {number} given twice, differently")
        rows[number] = chunk
    missing = [n for n in range(1, max(rows, default=0) + 1) if n not in rows]
    if not rows or missing:
        raise BadKeyFile("key import: lines missing from the paper form: "
                         + ", ".join(map(str, missing or [1])))
    payload = b"".join(rows[n] for n in sorted(rows))
    if len(payload) <= 64:
        raise BadKeyFile("key import: the paper form is too short to hold a key file")
    return _checked(payload[:32], payload[32:64].hex(), payload[64:])


def _from_text(lines: list[str]) -> ExportedKey:
    try:
        start, end = lines.index(BEGIN), lines.index(END)
    except ValueError:
        raise BadKeyFile("key import: no repofs key file in the text (neither the "
                         f"'{BEGIN}' form nor the paper form)") from None
    fields: dict[str, str] = {}
    body = []
    for line in lines[start + 1:end]:
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("repository", "key"):
            fields[key.strip()] = value.strip()
        elif line.strip():
            body.append(line.strip())
    try:
        repo_id = bytes.fromhex(fields["repository"])
        data = base64.b64decode("".join(body), validate=True)
        name = fields["key"]
    except (KeyError, ValueError, binascii.Error):
        raise BadKeyFile("key import: the key file text is damaged or incomplete") from None
    return _checked(repo_id, name, data)


def _checked(repo_id: bytes, name: str, data: bytes) -> ExportedKey:
    if len(repo_id) != 32 or not re.fullmatch(r"[0-9a-f]{64}", name):
        raise BadKeyFile("key import: the repository id or key name is malformed")
    if not crypto.same(crypto.object_name(data).encode(), name.encode()):
        raise BadKeyFile("key import: the key file does not match its name: the text is "
                         "damaged or was mistyped")
    keys.describe(data, name)  # the outer record must be one repofs can open
    return ExportedKey(repo_id, name, data)


def parse(text: str) -> ExportedKey:
    """Either form, as ``to_text`` or ``to_paper`` wrote it (blank lines and spaces in
    the paper form are forgiven)."""
    if len(text) > MAX_TEXT:
        raise BadKeyFile("key import: the text is far larger than a key file")
    lines = text.splitlines()
    if any(_PAPER.match(line) for line in lines) and BEGIN not in lines:
        return _from_paper(lines)
    return _from_text(lines)


def restore(location: RepoLocation, key: ExportedKey, passphrase: bytes) -> bool:
    """Write ``key`` into the repository at ``location`` after checking it belongs there
    and opens with ``passphrase``; False if that very key file was already there."""
    store = open_store(location)
    repo_id = decode_config(store.read_config())
    if not crypto.same(repo_id, key.repo_id):
        raise BadKeyFile(f"key import: this key file belongs to repository "
                         f"{key.repo_id.hex()[:8]}, not to {repo_id.hex()[:8]}")
    try:
        opened = keys.unwrap(key.data, key.name, passphrase, repo_id)
    except IntegrityError:
        raise BadKeyFile("key import: the key file does not belong to this repository "
                         "(its sealed repository id differs)") from None
    if opened is None:
        raise WrongPassphrase("key import: the passphrase does not open this key file")
    if store.exists(spec.NS_KEYS, key.name):
        return False
    return store.put(spec.NS_KEYS, key.name, key.data)


__all__ = ["ExportedKey", "check_paper_line", "export", "paper_line", "parse", "restore",
           "to_paper", "to_text"]
