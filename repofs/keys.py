"""Key files: random master keys wrapped under a passphrase (repofs-format(5), KEY FILES).

A repository has random master keys, made once by ``init``. Each key file
wraps them under one passphrase with Argon2id; several key files may exist,
so a passphrase change adds a new file and never re-encrypts data. A key
file's capability says which master keys it carries: ``write-only`` omits the
X25519 private key, so its holder can add snapshots but not decrypt sealed
objects; ``full`` carries it; ``admin`` carries the Ed25519 private key as well,
the only key that signs removal and condemn records (forget, prune). Every key
file carries the admin *public* key inside its authenticated payload, so every
key holder verifies those records and none but an admin can forge one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from repofs import crypto, spec
from repofs.errors import BadKeyFile, IntegrityError, KeyError_, WrongPassphrase

CAP_FULL = "full"
CAP_WRITE_ONLY = "write-only"
CAP_ADMIN = "admin"
CAPABILITIES = (CAP_WRITE_ONLY, CAP_FULL, CAP_ADMIN)  # each holds every key of the ones before
_AAD = b"repofs key file v1"


@dataclass(frozen=True)
class MasterKeys:
    """What an unlocked key gives: every key the format uses."""

    repo_id: bytes
    id_key: bytes  # keyed BLAKE3 of plaintext -> chunk and tree ids
    chunker_key: bytes  # secret permutation of the chunker
    shared_key: bytes  # objects every key may read: index segments, snapshot heads
    repo_public: bytes  # X25519 public key: what writers seal chunks, trees, bodies to
    reader: crypto.X25519Pair | None  # the private half; None for write-only keys
    capability: str
    key_name: str  # the key file's object name
    admin_public: bytes = b""  # Ed25519: verifies removal and condemn records
    admin: crypto.Ed25519Signer | None = None  # the private half; only in admin key files


def blob_id_key(id_key: bytes, blob_type: int) -> bytes:
    """The key of the ids of one blob type: a chunk and a tree with the same bytes get
    different ids, so neither can ever stand in for the other (repofs-format(5), OBJECT NAMES).
    """
    return crypto.keyed_stream(id_key, b"repofs v1 blob id key, type %d" % blob_type, 32)


def generate(repo_id: bytes) -> MasterKeys:
    """New master keys (for init): a full key that also holds the new admin signer."""
    pair = crypto.X25519Pair(crypto.X25519Pair.generate_private())
    admin = crypto.Ed25519Signer(crypto.Ed25519Signer.generate_private())
    return MasterKeys(
        repo_id=repo_id,
        id_key=crypto.random_bytes(32),
        chunker_key=crypto.random_bytes(32),
        shared_key=crypto.random_bytes(32),
        repo_public=pair.public,
        reader=pair,
        capability=CAP_FULL,
        key_name="",
        admin_public=admin.public,
        admin=admin,
    )


def restrict(keys: MasterKeys, capability: str) -> MasterKeys:
    """The same master keys cut down to ``capability``; never more than ``keys`` holds."""
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}")
    if CAPABILITIES.index(capability) > CAPABILITIES.index(keys.capability) and not (
            capability == CAP_ADMIN and keys.admin is not None and keys.reader is not None):
        raise ValueError(f"a {keys.capability} key cannot make a {capability} key")
    return replace(keys, capability=capability,
                   reader=None if capability == CAP_WRITE_ONLY else keys.reader,
                   admin=keys.admin if capability == CAP_ADMIN else None)


def wrap(keys: MasterKeys, passphrase: bytes, kdf: dict[str, int] | None = None) -> bytes:
    """Encode a key file for ``keys`` under ``passphrase``."""
    if not passphrase:
        raise KeyError_("an empty passphrase would protect nothing: choose one")
    params = dict(spec.KDF_DEFAULT if kdf is None else kdf)
    _check_kdf(params["t"], params["m"], params["p"], "(new)")
    salt = crypto.random_bytes(32)
    kek = crypto.argon2id(passphrase, salt, params["t"], params["m"], params["p"])
    payload: dict[str, object] = {
        "repo_id": keys.repo_id,
        "id_key": keys.id_key,
        "chunker_key": keys.chunker_key,
        "shared_key": keys.shared_key,
        "repo_public": keys.repo_public,
        "admin_public": keys.admin_public,
    }
    if len(keys.admin_public) != 32 or keys.capability not in CAPABILITIES:
        raise ValueError("master keys without an admin public key or with an unknown capability")
    if keys.capability != CAP_WRITE_ONLY:
        assert keys.reader is not None
        payload["repo_private"] = keys.reader.private_bytes()
    if keys.capability == CAP_ADMIN:
        assert keys.admin is not None
        payload["admin_private"] = keys.admin.private_bytes()
    wrapped = crypto.seal(kek, 0, spec.pack(payload), _AAD + keys.capability.encode())
    return spec.pack(
        {
            "v": spec.FORMAT_VERSION,
            "type": "repofs-key",
            "capability": keys.capability,
            "created": int(time.time()),
            "kdf": {"alg": "argon2id", "salt": salt, **params},
            "wrapped": wrapped,
        }
    )


def _check_kdf(t: int, m: int, p: int, name: str) -> None:
    if not (
        spec.KDF_MIN_T <= t <= spec.KDF_MAX_T
        and spec.KDF_MIN_M_KIB <= m <= spec.KDF_MAX_M_KIB
        and spec.KDF_MIN_P <= p <= spec.KDF_MAX_P
    ):
        raise BadKeyFile(f"key file {name} asks for KDF parameters outside sane bounds")


def unwrap(data: bytes, name: str, passphrase: bytes, repo_id: bytes) -> MasterKeys | None:
    """Open one key file; None if the passphrase does not fit, errors if the file is bad."""
    try:
        f = spec.Fields(spec.unpack(data, "key file", name), "key file", name)
        version, kind, capability = f.integer("v"), f.text("type"), f.text("capability")
    except IntegrityError as e:
        raise BadKeyFile(f"key file {name} is malformed") from e
    if version != spec.FORMAT_VERSION or kind != "repofs-key":
        raise BadKeyFile(f"key file {name} has an unknown version or type")
    if capability not in CAPABILITIES:
        raise BadKeyFile(f"key file {name} has an unknown capability")
    try:
        kdf = f.sub("kdf")
        alg = kdf.text("alg")
        t, m, p = kdf.integer("t"), kdf.integer("m"), kdf.integer("p")
        salt = kdf.blob("salt", size=32)
        wrapped = f.blob("wrapped", max_len=4096)
    except IntegrityError as e:
        raise BadKeyFile(f"key file {name} is malformed") from e
    if alg != "argon2id":
        raise BadKeyFile(f"key file {name} uses an unknown KDF")
    _check_kdf(t, m, p, name)
    kek = crypto.argon2id(passphrase, salt, t, m, p)
    try:
        plain = crypto.open_sealed(kek, 0, wrapped, _AAD + capability.encode())
    except crypto.AuthenticationFailed:
        return None
    try:
        k = spec.Fields(spec.unpack(plain, "key file", name), "key file", name)
        file_repo_id = k.blob("repo_id", size=32)
        private = k.blob("repo_private", size=32) if capability != CAP_WRITE_ONLY else None
        id_key, chunker_key = k.blob("id_key", size=32), k.blob("chunker_key", size=32)
        shared_key, repo_public = k.blob("shared_key", size=32), k.blob("repo_public", size=32)
        admin_public = k.blob("admin_public", size=32)
        admin_private = k.blob("admin_private", size=32) if capability == CAP_ADMIN else None
    except IntegrityError as e:
        raise BadKeyFile(f"key file {name} is malformed") from e
    if not crypto.same(file_repo_id, repo_id):
        raise IntegrityError("config", "config", "repository id does not match the key files")
    reader = None
    if private is not None:
        reader = crypto.X25519Pair(private)
        if not crypto.same(reader.public, repo_public):
            raise BadKeyFile(f"key file {name} holds an inconsistent key pair")
    admin = None
    if admin_private is not None:
        admin = crypto.Ed25519Signer(admin_private)
        if not crypto.same(admin.public, admin_public):
            raise BadKeyFile(f"key file {name} holds an inconsistent admin key pair")
    return MasterKeys(
        repo_id=repo_id,
        id_key=id_key,
        chunker_key=chunker_key,
        shared_key=shared_key,
        repo_public=repo_public,
        reader=reader,
        capability=capability,
        key_name=name,
        admin_public=admin_public,
        admin=admin,
    )


@dataclass(frozen=True)
class KeyFileInfo:
    """What a key file says about itself without its passphrase (``repofs key list``).

    Nothing here is authenticated until the file is opened: the capability is bound by
    the payload's AAD, so a relabelled file merely stops opening.
    """

    name: str
    capability: str
    created: int
    t: int
    m: int
    p: int


def describe(data: bytes, name: str) -> KeyFileInfo:
    """The outer record of a key file; BadKeyFile if it is not one repofs could open."""
    try:
        f = spec.Fields(spec.unpack(data, "key file", name), "key file", name)
        kdf = f.sub("kdf")
        info = KeyFileInfo(name, f.text("capability", 32), f.integer("created", hi=2**63),
                           kdf.integer("t"), kdf.integer("m"), kdf.integer("p"))
        ok = (f.integer("v") == spec.FORMAT_VERSION and f.text("type") == "repofs-key"
              and kdf.text("alg") == "argon2id" and info.capability in CAPABILITIES)
    except IntegrityError as e:
        raise BadKeyFile(f"key file {name} is malformed") from e
    if not ok:
        raise BadKeyFile(f"key file {name} has an unknown version, type, capability or KDF")
    _check_kdf(info.t, info.m, info.p, name)
    return info


def _kdf_cost(data: bytes) -> int:
    """t * m of a key file, for ordering only; unreadable ones sort last."""
    try:
        kdf = spec.Fields(spec.unpack(data, "key file", "?"), "key file", "?").sub("kdf")
        return kdf.integer("t") * kdf.integer("m")
    except IntegrityError:
        return 2**64


def unlock(files: list[tuple[str, bytes]], passphrase: bytes, repo_id: bytes) -> MasterKeys:
    """Try every key file; the first that opens wins.

    A malformed or absurd key file is skipped, so a planted one cannot lock
    users out; it is reported only if no key file opens at all. Cheap key files
    are tried first, so a planted file asking for the costliest legal KDF only
    costs time when nothing else opens.
    """
    bad: list[str] = []
    foreign: IntegrityError | None = None
    for name, data in sorted(files, key=lambda f: _kdf_cost(f[1])):
        try:
            keys = unwrap(data, name, passphrase, repo_id)
        except BadKeyFile as e:
            bad.append(str(e))
            continue
        except IntegrityError as e:  # opens, but for another repository: planted or wrong config
            foreign = e
            continue
        if keys is not None:
            return keys
    if foreign is not None:
        raise foreign
    if bad and len(bad) == len(files):
        raise BadKeyFile("; ".join(bad))
    raise WrongPassphrase("wrong passphrase: no key file of this repository opens with it")
