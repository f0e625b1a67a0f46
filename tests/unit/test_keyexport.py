"""keyexport: both forms give back exactly the key file; a mistyped paper line is named by
its number; damaged, foreign or oversized texts are refused with BadKeyFile."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repofs import crypto, keyexport, keys
from repofs.errors import BadKeyFile

REPO_ID = bytes(range(32))
DATA = keys.wrap(keys.generate(REPO_ID), b"passphrase")
KEY = keyexport.ExportedKey(REPO_ID, crypto.object_name(DATA), DATA)


def test_both_forms_round_trip() -> None:
    assert keyexport.parse(keyexport.to_text(KEY)) == KEY
    assert keyexport.parse(keyexport.to_paper(KEY)) == KEY
    # as a person may type it: lower or upper case, spaces anywhere, blank lines
    typed = "\n\n".join(line.upper().replace(" ", "  ")
                        for line in keyexport.to_paper(KEY).splitlines()[1:])
    assert keyexport.parse(typed) == KEY


@given(st.data())
def test_a_mistyped_paper_line_is_named(data: st.DataObject) -> None:
    lines = keyexport.to_paper(KEY).splitlines()
    n = data.draw(st.integers(1, len(lines) - 1))
    line = lines[n]
    hexpos = [i for i, c in enumerate(line) if c in "0123456789abcdef" and i > 4]
    pos = data.draw(st.sampled_from(hexpos[:-4]))  # a digit of the data, not the checksum
    wrong = data.draw(st.sampled_from([c for c in "0123456789abcdef" if c != line[pos]]))
    lines[n] = line[:pos] + wrong + line[pos + 1:]
    with pytest.raises(BadKeyFile, match=f"line {n} "):
        keyexport.parse("\n".join(lines))


def test_missing_lines_and_damaged_text_are_refused() -> None:
    lines = keyexport.to_paper(KEY).splitlines()
    with pytest.raises(BadKeyFile, match="missing.*: 3"):
        keyexport.parse("\n".join(lines[:3] + lines[4:]))
    text = keyexport.to_text(KEY)
    body = text.splitlines()[4]
    flipped = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    with pytest.raises(BadKeyFile, match="does not match its name"):
        keyexport.parse(text.replace(body, flipped))
    with pytest.raises(BadKeyFile, match="no repofs key file"):
        keyexport.parse("hello")
    with pytest.raises(BadKeyFile, match="larger"):
        keyexport.parse("x" * (keyexport.MAX_TEXT + 1))


def test_check_paper_line() -> None:
    line = keyexport.paper_line(7, b"\x01\x02\xab")
    assert keyexport.check_paper_line(line) == (7, b"\x01\x02\xab")
    with pytest.raises(ValueError, match="line 8"):
        keyexport.check_paper_line(line.replace("007", "008"))
