"""crypto: AEAD, HKDF, keyed BLAKE3, X25519 and Argon2id behind purpose names."""

from __future__ import annotations

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from repofs import crypto

keys32 = st.binary(min_size=32, max_size=32)
counters = st.integers(0, 2**96 - 1)


@given(keys32, counters, st.binary(max_size=2000), st.binary(max_size=64))
def test_seal_open_round_trip(key: bytes, counter: int, plain: bytes, aad: bytes) -> None:
    ct = crypto.seal(key, counter, plain, aad)
    assert len(ct) == len(plain) + crypto.TAG_LEN
    assert crypto.open_sealed(key, counter, ct, aad) == plain
    assert crypto.open_sealed(key, counter, memoryview(ct), aad) == plain


@given(st.data(), keys32, counters, st.binary(max_size=300), st.binary(max_size=32))
def test_any_change_fails_authentication(mutate, data: st.DataObject, key: bytes, counter: int,
                                         plain: bytes, aad: bytes) -> None:
    ct = crypto.seal(key, counter, plain, aad)
    with pytest.raises(crypto.AuthenticationFailed):
        crypto.open_sealed(key, counter, data.draw(mutate(ct)), aad)
    with pytest.raises(crypto.AuthenticationFailed):
        crypto.open_sealed(key, counter, ct, data.draw(mutate(aad)))
    other = data.draw(counters.filter(lambda c: c != counter))
    with pytest.raises(crypto.AuthenticationFailed):
        crypto.open_sealed(key, other, ct, aad)
    other_key = data.draw(keys32.filter(lambda k: k != key))
    with pytest.raises(crypto.AuthenticationFailed):
        crypto.open_sealed(other_key, counter, ct, aad)


@given(st.binary(max_size=15))
def test_short_ciphertext_fails_authentication(ct: bytes) -> None:
    with pytest.raises(crypto.AuthenticationFailed):
        crypto.open_sealed(b"k" * 32, 0, ct, b"")


def test_nonce_is_a_big_endian_counter() -> None:
    assert crypto.nonce(0) == bytes(12)
    assert crypto.nonce(1) == bytes(11) + b"\x01"
    assert crypto.nonce(2**96 - 1) == b"\xff" * 12
    with pytest.raises(OverflowError):
        crypto.nonce(2**96)


@given(keys32, st.binary(max_size=5000))
def test_keyed_id_is_keyed_blake3(key: bytes, data: bytes) -> None:
    i = crypto.keyed_id(key, data)
    assert len(i) == crypto.ID_LEN
    assert i == blake3.blake3(data, key=key).digest()
    assert i == crypto.keyed_id(key, memoryview(data))
    assert i != crypto.keyed_id(bytes(b ^ 1 for b in key), data)


@given(st.binary(max_size=5000))
def test_object_name_is_hex_blake3(data: bytes) -> None:
    name = crypto.object_name(data)
    assert name == blake3.blake3(data).hexdigest()
    assert len(name) == 64 and name == name.lower()
    assert crypto.object_name(memoryview(data)) == name


def test_object_name_of_large_input_uses_threads_consistently() -> None:
    data = bytes(range(256)) * 40000
    assert crypto.object_name(data) == blake3.blake3(data).hexdigest()


@given(keys32, st.binary(max_size=40), st.integers(0, 4096))
def test_keyed_stream(key: bytes, context: bytes, n: int) -> None:
    s = crypto.keyed_stream(key, context, n)
    assert len(s) == n
    assert crypto.keyed_stream(key, context, n + 10)[:n] == s


def test_hkdf_separates_inputs() -> None:
    base = crypto.hkdf(b"i" * 32, b"s" * 32, b"info")
    assert len(base) == crypto.KEY_LEN
    assert base == crypto.hkdf(b"i" * 32, b"s" * 32, b"info")
    others = {
        crypto.hkdf(b"j" * 32, b"s" * 32, b"info"),
        crypto.hkdf(b"i" * 32, b"t" * 32, b"info"),
        crypto.hkdf(b"i" * 32, b"s" * 32, b"infp"),
    }
    assert base not in others and len(others) == 3
    assert len(crypto.hkdf(b"i", b"s", b"x", length=64)) == 64


def test_same() -> None:
    assert crypto.same(b"abc", b"abc")
    assert not crypto.same(b"abc", b"abd")
    assert not crypto.same(b"abc", b"ab")


def test_random_bytes_are_fresh() -> None:
    seen = {crypto.random_bytes(16) for _ in range(1000)}
    assert len(seen) == 1000
    assert len(crypto.random_bytes(0)) == 0


def test_x25519_agreement() -> None:
    pair = crypto.X25519Pair(crypto.X25519Pair.generate_private())
    assert len(pair.public) == 32
    eph_public, shared = crypto.ephemeral_agreement(pair.public)
    assert pair.agree(eph_public) == shared
    assert crypto.X25519Pair(pair.private_bytes()).public == pair.public
    eph2, shared2 = crypto.ephemeral_agreement(pair.public)
    assert eph2 != eph_public and shared2 != shared
    other = crypto.X25519Pair(crypto.X25519Pair.generate_private())
    assert other.agree(eph_public) != shared


def test_x25519_rejects_low_order_points() -> None:
    pair = crypto.X25519Pair(crypto.X25519Pair.generate_private())
    with pytest.raises(ValueError):
        pair.agree(bytes(32))


def test_argon2id_minimum_cost() -> None:
    a = crypto.argon2id(b"pass", b"s" * 32, 3, 64 * 1024, 4)
    assert len(a) == crypto.KEY_LEN
    assert a != crypto.argon2id(b"pasT", b"s" * 32, 3, 64 * 1024, 4)
    assert a != crypto.argon2id(b"pass", b"t" * 32, 3, 64 * 1024, 4)
