"""protocol: frames are bounded before they are read; malformed ones are precise errors."""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repofs import protocol, spec
from repofs.protocol import ProtocolError


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_round_trip() -> None:
    buf = io.BytesIO()
    msgs = [{"op": "hello", "v": 1}, {"op": "put", "data": b"\0" * 1000, "size": 1000}, {}]
    for m in msgs:
        protocol.write_frame(buf, m)
    buf.seek(0)
    assert [protocol.read_frame(buf) for _ in msgs] == msgs
    assert protocol.read_frame(buf) is None  # a clean end between frames


def test_a_frame_over_the_limit_is_refused_before_it_is_read() -> None:
    class Exploding(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            assert n is not None and n <= 4, "the body of an oversized frame was read"
            return super().read(n)

    with pytest.raises(ProtocolError) as e:
        protocol.read_frame(Exploding(struct.pack(">I", protocol.MAX_FRAME + 1)))
    assert e.value.code == protocol.E_TOO_LARGE
    with pytest.raises(ProtocolError):
        protocol.write_frame(io.BytesIO(), {"data": b"x" * (protocol.MAX_FRAME + 1)})


@pytest.mark.parametrize("raw", [b"\x00", b"\x00\x00\x00\x05ab", frame(b"\xc1"), frame(b"\x91\x01"),
                                 frame(b"\x81\x01\x01"), frame(spec.pack("text"))])
def test_malformed_frames(raw: bytes) -> None:
    with pytest.raises(ProtocolError) as e:
        protocol.read_frame(io.BytesIO(raw))
    assert e.value.code == protocol.E_PROTOCOL


@given(st.binary(max_size=64))
def test_any_bytes_give_a_message_none_or_a_protocol_error(data: bytes) -> None:
    try:
        msg = protocol.read_frame(io.BytesIO(data))
    except ProtocolError:
        return
    assert msg is None or isinstance(msg, dict)


def test_typed_fields() -> None:
    m = {"s": "text", "i": 5, "b": b"xy", "t": True}
    assert protocol.text(m, "s") == "text" and protocol.integer(m, "i") == 5
    assert protocol.blob(m, "b") == b"xy"
    for call in (lambda: protocol.text(m, "i"), lambda: protocol.integer(m, "t"),
                 lambda: protocol.integer(m, "i", hi=4), lambda: protocol.blob(m, "s"),
                 lambda: protocol.text(m, "missing"), lambda: protocol.text(m, "s", 3)):
        with pytest.raises(ProtocolError):
            call()
    with pytest.raises(ProtocolError) as e:
        protocol.blob(m, "b", max_len=1)
    assert e.value.code == protocol.E_TOO_LARGE
    assert protocol.refusal("x", "y" * 5000)["message"] == "y" * 1000
