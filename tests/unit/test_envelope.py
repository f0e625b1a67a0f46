"""envelope: object headers, per-object keys, and what relabelling them does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repofs import crypto, spec
from repofs.envelope import (
    HEADER,
    HEADER_LEN,
    CannotRead,
    new_object,
    open_object,
    open_trailer_cipher,
    trailer_cipher,
)
from repofs.errors import IntegrityError

PAIR = crypto.X25519Pair(crypto.X25519Pair.generate_private())
SHARED = crypto.random_bytes(32)
KINDS = sorted(spec.KIND_NAMES)
MODES = [spec.MODE_SEALED, spec.MODE_SHARED]


def new(kind: int, mode: int):
    return new_object(kind, mode, SHARED, PAIR.public)


def reopen(header: bytes, kind: int, reader=PAIR, shared=SHARED, public=None, mode="header"):
    """Open as a reader would; by default asserting the mode the header states, so these
    tests reach the checks behind the per-kind mode rule (tested on its own below)."""
    if mode == "header":
        mode = header[6] if len(header) > 6 else None
    return open_object(header, kind, "obj1", shared, public or PAIR.public, reader, mode)


def relabel(header: bytes, offset: int, value: int) -> bytes:
    b = bytearray(header)
    b[offset] = value
    return bytes(b)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MODES)
def test_header_layout(kind: int, mode: int) -> None:
    c = new(kind, mode)
    assert HEADER_LEN == 40 == len(c.header)
    magic, version, k, m, form, material = HEADER.unpack(c.header)
    assert (magic, version, k, m, form) == (spec.MAGIC, spec.FORMAT_VERSION, kind, mode, 0)
    assert len(material) == 32
    assert c.kind == spec.KIND_NAMES[kind] and c.object_id == "(new)"


@given(st.sampled_from(KINDS), st.sampled_from(MODES), st.binary(max_size=500),
       st.binary(max_size=20), st.integers(0, 2**96 - 1))
def test_seal_open_round_trip(kind: int, mode: int, plain: bytes, aad: bytes,
                              counter: int) -> None:
    c = new(kind, mode)
    ct = c.seal(counter, plain, aad)
    r = reopen(c.header, kind, mode=mode)
    assert r.key == c.key and r.object_id == "obj1"
    assert r.open(counter, ct, aad) == plain
    assert r.open(counter, memoryview(ct), aad) == plain


def test_shared_mode_needs_no_private_key() -> None:
    c = new(spec.KIND_INDEX, spec.MODE_SHARED)
    ct = c.seal(0, b"index", b"x")
    assert reopen(c.header, spec.KIND_INDEX, reader=None).open(0, ct, b"x") == b"index"


def test_sealed_mode_needs_the_private_key() -> None:
    c = new(spec.KIND_PACK, spec.MODE_SEALED)
    with pytest.raises(CannotRead):
        reopen(c.header, spec.KIND_PACK, reader=None)
    other = crypto.X25519Pair(crypto.X25519Pair.generate_private())
    wrong = reopen(c.header, spec.KIND_PACK, reader=other)
    with pytest.raises(IntegrityError, match="authentication failed"):
        wrong.open(0, c.seal(0, b"chunk"))


def test_sealed_objects_do_not_depend_on_the_shared_key() -> None:
    c = new(spec.KIND_PACK, spec.MODE_SEALED)
    r = reopen(c.header, spec.KIND_PACK, shared=crypto.random_bytes(32))
    assert r.open(5, c.seal(5, b"x")) == b"x"


def test_shared_objects_need_the_shared_key() -> None:
    c = new(spec.KIND_SNAPSHOT, spec.MODE_SHARED)
    r = reopen(c.header, spec.KIND_SNAPSHOT, shared=crypto.random_bytes(32))
    with pytest.raises(IntegrityError, match="snapshot obj1 is corrupt"):
        r.open(0, c.seal(0, b"head"))


# -- nonces: every object has its own key -----------------------------------------------------
@settings(max_examples=20)
@given(st.sampled_from(KINDS), st.sampled_from(MODES))
def test_new_objects_never_share_a_key_or_header(kind: int, mode: int) -> None:
    ciphers = [new(kind, mode) for _ in range(200)]
    assert len({c.key for c in ciphers}) == 200
    assert len({c.header for c in ciphers}) == 200
    # the same counter under two objects gives unrelated ciphertexts of the same plaintext
    assert ciphers[0].seal(0, b"same") != ciphers[1].seal(0, b"same")


def test_keys_differ_across_kinds_and_modes_for_the_same_material() -> None:
    c = new(spec.KIND_INDEX, spec.MODE_SHARED)
    keys = {c.key}
    for kind in KINDS:
        if kind != spec.KIND_INDEX:
            h = relabel(c.header, 5, kind)
            keys.add(reopen(h, kind).key)
    assert len(keys) == len(KINDS)


# -- relabelling -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MODES)
def test_kind_relabel_is_detected(kind: int, mode: int) -> None:
    c = new(kind, mode)
    ct = c.seal(0, b"payload")
    for other in KINDS:
        if other == kind:
            continue
        # read as what it is labelled: the kind check refuses
        with pytest.raises(IntegrityError, match="object is a"):
            reopen(c.header, other)
        # relabel the header to the kind the reader expects: the key and AAD change
        r = reopen(relabel(c.header, 5, other), other)
        with pytest.raises(IntegrityError, match="authentication failed"):
            r.open(0, ct)


@pytest.mark.parametrize("kind", KINDS)
def test_mode_relabel_is_detected(kind: int) -> None:
    for mode, other in [(spec.MODE_SEALED, spec.MODE_SHARED),
                        (spec.MODE_SHARED, spec.MODE_SEALED)]:
        c = new(kind, mode)
        ct = c.seal(0, b"payload")
        try:
            r = reopen(relabel(c.header, 6, other), kind)
        except IntegrityError:
            continue  # random material that is not a valid X25519 point
        with pytest.raises(IntegrityError, match="authentication failed"):
            r.open(0, ct)


@pytest.mark.parametrize("mode", [0, 3, 255])
def test_unknown_mode(mode: int) -> None:
    c = new(spec.KIND_PACK, spec.MODE_SHARED)
    with pytest.raises(IntegrityError, match="unknown mode"):
        reopen(relabel(c.header, 6, mode), spec.KIND_PACK)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_version_relabel_is_detected(version: int) -> None:
    c = new(spec.KIND_INDEX, spec.MODE_SHARED)
    with pytest.raises(IntegrityError, match="unknown format version"):
        reopen(relabel(c.header, 4, version), spec.KIND_INDEX)


def test_bad_magic_and_reserved_byte_and_material() -> None:
    c = new(spec.KIND_INDEX, spec.MODE_SHARED)
    ct = c.seal(0, b"x")
    with pytest.raises(IntegrityError, match="not a repofs object"):
        reopen(b"XPFS" + c.header[4:], spec.KIND_INDEX)
    # the reserved byte and the key material are bound through the AAD and the key
    for pos in (7, 8, 39):
        r = reopen(relabel(c.header, pos, c.header[pos] ^ 1), spec.KIND_INDEX)
        with pytest.raises(IntegrityError, match="authentication failed"):
            r.open(0, ct)


@pytest.mark.parametrize("n", [0, 1, 39, 41, 80])
def test_truncated_or_long_header(n: int) -> None:
    c = new(spec.KIND_PACK, spec.MODE_SEALED)
    header = (c.header * 2)[:n]
    with pytest.raises(IntegrityError, match="truncated header"):
        reopen(header, spec.KIND_PACK)


def test_invalid_ephemeral_key_is_an_integrity_error() -> None:
    c = new(spec.KIND_PACK, spec.MODE_SEALED)
    header = c.header[:8] + bytes(32)  # the all-zero point: no shared secret
    with pytest.raises(IntegrityError, match="invalid ephemeral key"):
        reopen(header, spec.KIND_PACK)


def test_counter_and_aad_are_bound() -> None:
    c = new(spec.KIND_PACK, spec.MODE_SEALED)
    ct = c.seal(3, b"blob", b"aad")
    r = reopen(c.header, spec.KIND_PACK)
    for counter, aad in [(4, b"aad"), (3, b"aae"), (3, b"")]:
        with pytest.raises(IntegrityError, match="pack obj1"):
            r.open(counter, ct, aad)


@given(st.sampled_from(KINDS), st.binary(min_size=40, max_size=40))
def test_random_headers_give_integrity_error_only(kind: int, header: bytes) -> None:
    try:
        reopen(header, kind)
    except (IntegrityError, CannotRead):
        pass


@given(st.data(), st.sampled_from(KINDS), st.sampled_from(MODES))
def test_mutated_objects_never_open(mutate, data: st.DataObject, kind: int, mode: int) -> None:
    c = new(kind, mode)
    obj = c.header + c.seal(0, b"some plaintext", b"ctx")
    bad = data.draw(mutate(obj))
    with pytest.raises(IntegrityError):
        r = reopen(bad[:HEADER_LEN], kind)
        r.open(0, bad[HEADER_LEN:], b"ctx")


@pytest.mark.parametrize(("kind", "wrong"), [(spec.KIND_PACK, spec.MODE_SHARED),
                                             (spec.KIND_INDEX, spec.MODE_SEALED)])
def test_each_kind_must_have_its_mode(kind: int, wrong: int) -> None:
    """A pack in shared mode would be readable by write-only keys: refused."""
    c = new(kind, wrong)
    with pytest.raises(IntegrityError, match="wrong encryption mode"):
        reopen(c.header, kind, mode=None)
    snap = new(spec.KIND_SNAPSHOT, spec.MODE_SEALED)
    with pytest.raises(IntegrityError, match="wrong encryption mode"):
        reopen(snap.header, spec.KIND_SNAPSHOT, mode=spec.MODE_SHARED)


# -- pack trailers: form 0 (format 1) and form 1 (format 2) ---------------------------------

def _pack(form: int):
    c = new_object(spec.KIND_PACK, spec.MODE_SEALED, SHARED, PAIR.public, form)
    return c, trailer_cipher(c, SHARED)


@pytest.mark.parametrize("form", spec.TRAILER_FORMS)
def test_trailer_round_trip_both_forms(form: int) -> None:
    c, t = _pack(form)
    assert c.header[7] == form
    assert (t is c) == (form == spec.TRAILER_SEALED)  # form 0: the pack's own key
    ct = t.seal(spec.TRAILER_NONCE, b"rows", b"trailer")
    opened = open_trailer_cipher(c.header, "p", SHARED, PAIR.public, PAIR)
    assert opened.open(spec.TRAILER_NONCE, ct, b"trailer") == b"rows"
    assert trailer_cipher(reopen(c.header, spec.KIND_PACK), SHARED).key == t.key


def test_write_only_key_opens_form_1_trailers_but_not_blobs() -> None:
    c, t = _pack(spec.TRAILER_SHARED)
    ct = t.seal(spec.TRAILER_NONCE, b"rows", b"trailer")
    blob = c.seal(0, b"secret", b"blob")
    opened = open_trailer_cipher(c.header, "p", SHARED, PAIR.public, None)
    assert opened.open(spec.TRAILER_NONCE, ct, b"trailer") == b"rows"
    assert opened.key != c.key  # the trailer key is not the pack's
    with pytest.raises(IntegrityError, match="authentication failed"):
        opened.open(0, blob, b"blob")
    with pytest.raises(CannotRead):
        reopen(c.header, spec.KIND_PACK, reader=None)
    c0, _ = _pack(spec.TRAILER_SEALED)
    with pytest.raises(CannotRead):  # a format 1 trailer needs the private key
        open_trailer_cipher(c0.header, "p", SHARED, PAIR.public, None)


def test_form_1_trailer_is_bound_to_its_pack_and_form() -> None:
    c, t = _pack(spec.TRAILER_SHARED)
    ct = t.seal(spec.TRAILER_NONCE, b"rows", b"trailer")
    other, _ = _pack(spec.TRAILER_SHARED)
    with pytest.raises(IntegrityError, match="authentication failed"):  # moved to a pack
        open_trailer_cipher(other.header, "p", SHARED, PAIR.public, None).open(
            spec.TRAILER_NONCE, ct, b"trailer")
    with pytest.raises(IntegrityError, match="authentication failed"):  # form relabelled
        open_trailer_cipher(relabel(c.header, 7, 0), "p", SHARED, PAIR.public, PAIR).open(
            spec.TRAILER_NONCE, ct, b"trailer")
    with pytest.raises(IntegrityError, match="authentication failed"):  # another shared key
        open_trailer_cipher(c.header, "p", crypto.random_bytes(32), PAIR.public, None).open(
            spec.TRAILER_NONCE, ct, b"trailer")
    with pytest.raises(IntegrityError, match="authentication failed"):
        open_trailer_cipher(c.header, "p", SHARED, PAIR.public, None).open(
            spec.TRAILER_NONCE, ct[:-1] + bytes([ct[-1] ^ 1]), b"trailer")
    with pytest.raises(IntegrityError, match="unknown trailer form 2"):
        open_trailer_cipher(relabel(c.header, 7, 2), "p", SHARED, PAIR.public, None)
    with pytest.raises(IntegrityError, match="unknown trailer form 2"):
        reopen(relabel(c.header, 7, 2), spec.KIND_PACK)
    with pytest.raises(IntegrityError, match="object is a index segment"):
        idx = new(spec.KIND_INDEX, spec.MODE_SHARED)
        open_trailer_cipher(idx.header, "p", SHARED, PAIR.public, None)
