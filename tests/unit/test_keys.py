"""keys: master keys wrapped under a passphrase, and hostile key files."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repofs import crypto, keys, spec
from repofs.errors import BadKeyFile, IntegrityError, KeyError_, WrongPassphrase

REPO_ID = b"\x11" * 32
MIN_KDF = {"t": 3, "m": 64 * 1024, "p": 1}


def fake_argon2id(passphrase: bytes, salt: bytes, t: int, m_kib: int, p: int) -> bytes:
    """Argon2id's interface without its cost, refusing what the real one must never see."""
    assert spec.KDF_MIN_T <= t <= spec.KDF_MAX_T
    assert spec.KDF_MIN_M_KIB <= m_kib <= spec.KDF_MAX_M_KIB
    assert spec.KDF_MIN_P <= p <= spec.KDF_MAX_P
    assert len(salt) == 32
    return crypto.keyed_id(salt, b"%d/%d/%d/" % (t, m_kib, p) + passphrase)


@contextmanager
def fast_kdf() -> Iterator[list[tuple[int, int, int]]]:
    calls: list[tuple[int, int, int]] = []

    def spy(passphrase: bytes, salt: bytes, t: int, m_kib: int, p: int) -> bytes:
        calls.append((t, m_kib, p))
        return fake_argon2id(passphrase, salt, t, m_kib, p)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(crypto, "argon2id", spy)
        yield calls


@pytest.fixture(scope="module")
def master() -> keys.MasterKeys:
    return keys.generate(REPO_ID)


@pytest.fixture(scope="module")
def real_keyfile(master: keys.MasterKeys) -> bytes:
    """The one key file made with the real Argon2id, at its minimum legal cost."""
    return keys.wrap(master, b"correct horse", MIN_KDF)


def craft(payload: dict, passphrase: bytes = b"pw", capability: str = keys.CAP_FULL,
          kdf: dict | None = None, outer: dict | None = None) -> bytes:
    """A key file with any inner payload, sealed the way ``wrap`` seals (under fast_kdf)."""
    params = dict(MIN_KDF if kdf is None else kdf)
    salt = b"\x05" * 32
    kek = fake_argon2id(passphrase, salt, params["t"], params["m"], params["p"])
    wrapped = crypto.seal(kek, 0, spec.pack(payload), keys._AAD + capability.encode())
    record = {"v": 1, "type": "repofs-key", "capability": capability, "created": 0,
              "kdf": {"alg": "argon2id", "salt": salt, **params}, "wrapped": wrapped}
    record.update(outer or {})
    return spec.pack(record)


def payload_of(m: keys.MasterKeys) -> dict:
    p = {"repo_id": m.repo_id, "id_key": m.id_key, "chunker_key": m.chunker_key,
         "shared_key": m.shared_key, "repo_public": m.repo_public}
    if m.reader is not None:
        p["repo_private"] = m.reader.private_bytes()
    return p


def same_keys(a: keys.MasterKeys, b: keys.MasterKeys) -> bool:
    return (a.repo_id, a.id_key, a.chunker_key, a.shared_key, a.repo_public, a.capability) == (
        b.repo_id, b.id_key, b.chunker_key, b.shared_key, b.repo_public, b.capability
    ) and ((a.reader is None) == (b.reader is None)) and (
        a.reader is None or a.reader.private_bytes() == b.reader.private_bytes()  # type: ignore
    )


# -- generate ---------------------------------------------------------------------------------
def test_generate_makes_independent_random_keys(master: keys.MasterKeys) -> None:
    assert master.repo_id == REPO_ID and master.capability == keys.CAP_FULL
    ks = [master.id_key, master.chunker_key, master.shared_key, master.repo_public]
    assert all(len(k) == 32 for k in ks) and len(set(ks)) == 4
    assert master.reader is not None and master.reader.public == master.repo_public
    other = keys.generate(REPO_ID)
    assert other.id_key != master.id_key and other.repo_public != master.repo_public


# -- the real KDF, at its minimum cost ----------------------------------------------------------
def test_real_wrap_unwrap_round_trip(master: keys.MasterKeys, real_keyfile: bytes) -> None:
    got = keys.unwrap(real_keyfile, "k1", b"correct horse", REPO_ID)
    assert got is not None and same_keys(got, master)
    assert got.key_name == "k1"
    assert keys.unwrap(real_keyfile, "k1", b"wrong horse", REPO_ID) is None


def test_key_file_record(real_keyfile: bytes) -> None:
    rec = spec.unpack(real_keyfile, "key file", "k")
    assert rec["v"] == spec.FORMAT_VERSION and rec["type"] == "repofs-key"
    assert rec["capability"] == keys.CAP_FULL
    assert rec["kdf"]["alg"] == "argon2id" and len(rec["kdf"]["salt"]) == 32
    assert (rec["kdf"]["t"], rec["kdf"]["m"], rec["kdf"]["p"]) == (3, 64 * 1024, 1)
    assert isinstance(rec["wrapped"], bytes) and len(rec["wrapped"]) < 4096


def test_real_unlock_skips_planted_files(real_keyfile: bytes) -> None:
    planted = [("0" * 64, b"garbage"), ("1" * 64, spec.pack({})),
               ("2" * 64, spec.pack(with_kdf(t=10**6, m=2**40, p=1000)))]
    got = keys.unlock([*planted, ("f" * 64, real_keyfile)], b"correct horse", REPO_ID)
    assert got.key_name == "f" * 64


def test_default_kdf_is_used_when_none_given(master: keys.MasterKeys) -> None:
    with fast_kdf() as calls:
        data = keys.wrap(master, b"pw")
        assert keys.unwrap(data, "k", b"pw", REPO_ID) is not None
    d = spec.KDF_DEFAULT
    assert calls == [(d["t"], d["m"], d["p"])] * 2


# -- round trips under a fast stand-in KDF -------------------------------------------------------
@given(st.binary(min_size=1, max_size=100),
       st.sampled_from([keys.CAP_FULL, keys.CAP_WRITE_ONLY]),
       st.integers(spec.KDF_MIN_T, spec.KDF_MAX_T),
       st.integers(spec.KDF_MIN_M_KIB, spec.KDF_MAX_M_KIB),
       st.integers(spec.KDF_MIN_P, spec.KDF_MAX_P))
def test_wrap_unwrap_round_trip(passphrase: bytes, capability: str, t: int, m: int,
                                p: int) -> None:
    mk = keys.generate(REPO_ID)
    if capability == keys.CAP_WRITE_ONLY:
        mk = dataclasses.replace(mk, reader=None, capability=capability)
    with fast_kdf():
        data = keys.wrap(mk, passphrase, {"t": t, "m": m, "p": p})
        got = keys.unwrap(data, "name", passphrase, REPO_ID)
        assert got is not None and same_keys(got, mk)
        assert keys.unwrap(data, "name", passphrase + b"x", REPO_ID) is None


def test_write_only_key_files_hold_no_private_key(master: keys.MasterKeys) -> None:
    wo = dataclasses.replace(master, reader=None, capability=keys.CAP_WRITE_ONLY)
    with fast_kdf():
        data = keys.wrap(wo, b"pw", MIN_KDF)
        got = keys.unwrap(data, "w", b"pw", REPO_ID)
    assert got is not None and got.reader is None and got.capability == keys.CAP_WRITE_ONLY
    assert master.reader is not None
    assert master.reader.private_bytes() not in data
    rec = spec.unpack(data, "key file", "w")
    kek = fake_argon2id(b"pw", rec["kdf"]["salt"], 3, 64 * 1024, 1)
    inner = spec.unpack(crypto.open_sealed(kek, 0, rec["wrapped"],
                                           keys._AAD + b"write-only"), "key file", "w")
    assert "repo_private" not in inner


def test_capability_cannot_be_relabelled(master: keys.MasterKeys) -> None:
    with fast_kdf():
        full = keys.wrap(master, b"pw", MIN_KDF)
        wo = keys.wrap(dataclasses.replace(master, reader=None, capability="write-only"),
                       b"pw", MIN_KDF)
        for data, other in [(full, "write-only"), (wo, "full")]:
            rec = spec.unpack(data, "key file", "k")
            rec["capability"] = other
            assert keys.unwrap(spec.pack(rec), "k", b"pw", REPO_ID) is None


def test_key_files_are_salted(master: keys.MasterKeys) -> None:
    with fast_kdf():
        a = keys.wrap(master, b"pw", MIN_KDF)
        b = keys.wrap(master, b"pw", MIN_KDF)
    assert a != b


# -- KDF parameters -----------------------------------------------------------------------------
ABSURD = [
    {"t": 2, "m": 64 * 1024, "p": 1},
    {"t": 0, "m": 64 * 1024, "p": 1},
    {"t": 65, "m": 64 * 1024, "p": 1},
    {"t": 2**63, "m": 64 * 1024, "p": 1},
    {"t": 3, "m": 64 * 1024 - 1, "p": 1},
    {"t": 3, "m": 8, "p": 1},
    {"t": 3, "m": 4 * 1024 * 1024 + 1, "p": 1},
    {"t": 3, "m": 2**60, "p": 1},
    {"t": 3, "m": 64 * 1024, "p": 0},
    {"t": 3, "m": 64 * 1024, "p": 65},
]


@pytest.mark.parametrize("kdf", ABSURD)
def test_wrap_refuses_absurd_kdf(master: keys.MasterKeys, kdf: dict) -> None:
    with fast_kdf() as calls, pytest.raises(BadKeyFile, match="outside sane bounds"):
        keys.wrap(master, b"pw", kdf)
    assert calls == []


@pytest.mark.parametrize("kdf", ABSURD)
def test_unwrap_refuses_absurd_kdf_before_deriving(kdf: dict) -> None:
    data = spec.pack({"v": 1, "type": "repofs-key", "capability": "full", "created": 0,
                      "kdf": {"alg": "argon2id", "salt": b"s" * 32, **kdf},
                      "wrapped": b"w" * 100})
    with fast_kdf() as calls, pytest.raises(BadKeyFile, match="outside sane bounds"):
        keys.unwrap(data, "k", b"pw", REPO_ID)
    assert calls == []


# -- malformed key files -------------------------------------------------------------------------
GOOD_OUTER = {"v": 1, "type": "repofs-key", "capability": "full", "created": 0,
              "kdf": {"alg": "argon2id", "salt": b"s" * 32, "t": 3, "m": 65536, "p": 1},
              "wrapped": b"w" * 100}


def without(key: str) -> dict:
    return {k: v for k, v in GOOD_OUTER.items() if k != key}


def with_kdf(**kw: object) -> dict:
    return {**GOOD_OUTER, "kdf": {**GOOD_OUTER["kdf"], **kw}}  # type: ignore[dict-item]


MALFORMED = [
    b"", b"\xc1", b"not msgpack at all", spec.pack([1, 2, 3]), spec.pack("key"), spec.pack({}),
    spec.pack(None), spec.pack({**GOOD_OUTER, "v": 2}), spec.pack({**GOOD_OUTER, "v": "1"}),
    spec.pack({**GOOD_OUTER, "v": True}), spec.pack({**GOOD_OUTER, "type": "other"}),
    spec.pack({**GOOD_OUTER, "type": b"repofs-key"}),
    spec.pack({**GOOD_OUTER, "capability": "root"}),
    spec.pack({**GOOD_OUTER, "capability": 1}),
    spec.pack({**GOOD_OUTER, "kdf": "argon2id"}), spec.pack({**GOOD_OUTER, "kdf": None}),
    spec.pack(with_kdf(alg="scrypt")), spec.pack(with_kdf(alg=None)),
    spec.pack(with_kdf(salt=b"short")), spec.pack(with_kdf(salt="s" * 32)),
    spec.pack(with_kdf(t="3")), spec.pack(with_kdf(m=-1)), spec.pack(with_kdf(p=1.0)),
    spec.pack({**GOOD_OUTER, "wrapped": "text"}),
    spec.pack({**GOOD_OUTER, "wrapped": b"w" * 5000}),
    *(spec.pack(without(k)) for k in ("v", "type", "capability", "kdf", "wrapped")),
]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_key_files_raise_bad_key_file(data: bytes) -> None:
    with fast_kdf(), pytest.raises(BadKeyFile):
        keys.unwrap(data, "k", b"pw", REPO_ID)


@pytest.mark.parametrize("data", MALFORMED)
def test_a_planted_malformed_file_never_locks_users_out(master: keys.MasterKeys,
                                                        data: bytes) -> None:
    with fast_kdf():
        good = keys.wrap(master, b"pw", MIN_KDF)
        for files in ([("0" * 64, data), ("f" * 64, good)], [("f" * 64, good), ("0" * 64, data)]):
            assert same_keys(keys.unlock(files, b"pw", REPO_ID), master)
        with pytest.raises(WrongPassphrase):
            keys.unlock([("0" * 64, data), ("f" * 64, good)], b"nope", REPO_ID)
        with pytest.raises(BadKeyFile):
            keys.unlock([("0" * 64, data), ("1" * 64, data)], b"pw", REPO_ID)


def test_bad_payloads_behind_a_valid_tag(master: keys.MasterKeys) -> None:
    """Even an authenticated payload (someone who knows the passphrase) is checked."""
    good = payload_of(master)
    other_pair = crypto.X25519Pair(crypto.X25519Pair.generate_private())
    bad_payloads = [
        {}, {**good, "id_key": b"short"}, {**good, "shared_key": "text"},
        {k: v for k, v in good.items() if k != "chunker_key"},
        {k: v for k, v in good.items() if k != "repo_private"},
        {**good, "repo_private": other_pair.private_bytes()},  # inconsistent pair
        {**good, "repo_public": b"\x00" * 31},
    ]
    with fast_kdf():
        for payload in bad_payloads:
            with pytest.raises(BadKeyFile):
                keys.unwrap(craft(payload), "k", b"pw", REPO_ID)
        for raw in [b"\xc1", spec.pack([1]), spec.pack(None)]:
            salt = b"\x05" * 32
            kek = fake_argon2id(b"pw", salt, 3, 65536, 1)
            data = spec.pack({**GOOD_OUTER, "kdf": {**GOOD_OUTER["kdf"], "salt": salt},
                              "wrapped": crypto.seal(kek, 0, raw, keys._AAD + b"full")})
            with pytest.raises(BadKeyFile):
                keys.unwrap(data, "k", b"pw", REPO_ID)


def test_key_file_of_another_repository(master: keys.MasterKeys) -> None:
    foreign = keys.generate(b"\x22" * 32)
    with fast_kdf():
        data = keys.wrap(foreign, b"pw", MIN_KDF)
        with pytest.raises(IntegrityError, match="repository id does not match"):
            keys.unwrap(data, "k", b"pw", REPO_ID)
        with pytest.raises(IntegrityError, match="repository id does not match"):
            keys.unlock([("0" * 64, data)], b"pw", REPO_ID)


def test_a_planted_foreign_key_file_never_locks_users_out(master: keys.MasterKeys) -> None:
    """A key file copied from another repository that shares the passphrase."""
    foreign = keys.generate(b"\x22" * 32)
    with fast_kdf():
        planted = keys.wrap(foreign, b"pw", MIN_KDF)
        good = keys.wrap(master, b"pw", MIN_KDF)
        got = keys.unlock([("0" * 64, planted), ("f" * 64, good)], b"pw", REPO_ID)
    assert same_keys(got, master) and got.key_name == "f" * 64


def test_unlock_tries_every_file(master: keys.MasterKeys) -> None:
    with fast_kdf():
        a = keys.wrap(master, b"first", MIN_KDF)
        b = keys.wrap(master, b"second", MIN_KDF)
        files = [("a" * 64, a), ("b" * 64, b)]
        assert keys.unlock(files, b"first", REPO_ID).key_name == "a" * 64
        assert keys.unlock(files, b"second", REPO_ID).key_name == "b" * 64
        with pytest.raises(WrongPassphrase):
            keys.unlock(files, b"third", REPO_ID)
        with pytest.raises(WrongPassphrase):
            keys.unlock([], b"first", REPO_ID)


# -- fuzzing ------------------------------------------------------------------------------------
def _outcome(data: bytes) -> None:
    try:
        got = keys.unwrap(data, "k", b"pw", REPO_ID)
    except BadKeyFile:
        return
    assert got is None


@given(st.binary(max_size=400))
def test_random_bytes_are_bad_key_files(data: bytes) -> None:
    with fast_kdf():
        _outcome(data)


leaf = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=12)
        | st.binary(max_size=40) | st.sampled_from([1, 3, 65536, "argon2id", "full",
                                                     "repofs-key", b"s" * 32]))
field_values = st.recursive(leaf, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.sampled_from(["alg", "salt", "t", "m", "p"]),
                                              inner, max_size=5), max_leaves=10)


@given(st.dictionaries(st.sampled_from(list(GOOD_OUTER)), field_values, max_size=6),
       st.booleans())
def test_hostile_records_are_bad_key_files(fields: dict, on_top: bool) -> None:
    record = {**GOOD_OUTER, **fields} if on_top else fields
    with fast_kdf():
        _outcome(spec.pack(record))


@given(st.data())
def test_mutated_key_files_are_refused(mutate, master: keys.MasterKeys,
                                       data: st.DataObject) -> None:
    with fast_kdf():
        good = keys.wrap(master, b"pw", MIN_KDF)
        bad = data.draw(mutate(good))
        try:
            got = keys.unwrap(bad, "k", b"pw", REPO_ID)
        except BadKeyFile:
            return
        # a change outside the authenticated parts ("created") may still open
        assert got is None or same_keys(got, master)


def test_an_empty_passphrase_is_refused() -> None:
    with pytest.raises(KeyError_, match="empty passphrase"):
        keys.wrap(keys.generate(REPO_ID), b"")
