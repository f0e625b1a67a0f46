"""man/: every command has a page that names all its options, and the format page has
every section the code refers to as "repofs-format(5), NAME".

These tests read the Markdown sources only; rendering them (man/render.sh) needs
go-md2man and mandoc, and is checked by the last test where those are installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest
from repofs_cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
MAN = ROOT / "man"
FORMAT_PAGE = MAN / "repofs-format.5.md"

# "repofs-format(5), NAME" where NAME is one or more upper-case words; several names
# may be joined with a lower-case "and" ("repofs-format(5), TREES and SNAPSHOTS").
_WORDS = r"\b[A-Z][A-Z0-9-]*\b(?:[ \t]+\b[A-Z][A-Z0-9-]*\b)*"
_REFERENCE = re.compile(rf"repofs-format\(5\),\s+({_WORDS}(?:\s+and\s+{_WORDS})*)")


def _commands() -> dict[str, click.Command]:
    return dict(cli.commands)


def _page(command: str) -> Path:
    return MAN / f"repofs-{command}.1.md"


def _long_options(command: click.Command) -> list[str]:
    """Every long option the command declares, both halves of --x/--no-x flags included."""
    names = []
    for param in command.params:
        if isinstance(param, click.Option):
            names += [o for o in (*param.opts, *param.secondary_opts) if o.startswith("--")]
    return names


def _mentions(text: str, option: str) -> bool:
    """``option`` occurs as a whole option name (--exclude is not found in --exclude-from)."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def _headings(path: Path, level: int) -> set[str]:
    """Markdown ATX headings of exactly ``level``, outside fenced code blocks."""
    found: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        m = re.match(r"(#+)\s+(.*?)\s*#*\s*$", line)
        if not fenced and m and len(m.group(1)) == level:
            found.add(m.group(2))
    return found


def _format_references() -> dict[str, list[str]]:
    """Section name -> the source files that refer to it."""
    refs: dict[str, list[str]] = {}
    sources = sorted((ROOT / "repofs").rglob("*.py")) + sorted((ROOT / "cli").rglob("*.py"))
    for src in sources:
        for m in _REFERENCE.finditer(src.read_text(encoding="utf-8")):
            for name in re.split(r"\s+and\s+", m.group(1)):
                refs.setdefault(" ".join(name.split()), []).append(
                    str(src.relative_to(ROOT)))
    return refs


def test_cli_has_commands() -> None:
    assert {"init", "create", "snapshots", "ls", "restore", "dump"} <= set(_commands())


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_command_has_a_page(command: str) -> None:
    assert _page(command).is_file(), f"man/repofs-{command}.1.md is missing"


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_long_option_is_documented(command: str) -> None:
    page = _page(command)
    if not page.is_file():
        pytest.skip(f"{page.name} is missing (reported by test_every_command_has_a_page)")
    text = page.read_text(encoding="utf-8")
    missing = [o for o in _long_options(_commands()[command]) if not _mentions(text, o)]
    assert not missing, f"{page.name} does not document {', '.join(missing)}"


def test_group_options_are_documented() -> None:
    text = (MAN / "repofs.1.md").read_text(encoding="utf-8")
    missing = [o for o in [*_long_options(cli), "--help"] if not _mentions(text, o)]
    assert not missing, f"repofs.1.md does not document {', '.join(missing)}"


def test_every_command_page_is_a_command() -> None:
    stale = [p.name for p in MAN.glob("repofs-*.1.md")
             if p.name[len("repofs-"):-len(".1.md")] not in _commands()]
    assert not stale, f"pages without a command: {', '.join(stale)}"


def test_format_sections_referenced_by_the_code_exist() -> None:
    refs = _format_references()
    # The references the core modules make today; the regex must keep finding them.
    assert {"ENCRYPTION", "KEY FILES", "PACKS", "INDEX SEGMENTS", "TREES",
            "SNAPSHOTS", "WRITE ORDER", "CHUNKING"} <= set(refs)
    sections = _headings(FORMAT_PAGE, 1)
    missing = {name: files for name, files in refs.items() if name not in sections}
    assert not missing, f"repofs-format.5.md lacks sections referenced in the code: {missing}"


def test_format_page_has_the_spec_sections() -> None:
    sections = _headings(FORMAT_PAGE, 1)
    required = ["NAME", "DESCRIPTION", "REPOSITORY LAYOUT", "FORMAT VERSION", "OBJECT NAMES",
                "ENCRYPTION", "KEY FILES", "CHUNKING", "PACKS", "INDEX SEGMENTS", "TREES",
                "SNAPSHOTS", "WRITE ORDER", "READ ORDER AND VERIFICATION",
                "CAPS ON HOSTILE INPUT", "INVARIANTS", "CHANGES"]
    assert [s for s in required if s not in sections] == []


def test_format_page_states_the_constants_of_the_code() -> None:
    """The numbers and strings the page specifies are the ones the code uses."""
    from repofs import envelope, keys, spec

    text = FORMAT_PAGE.read_text(encoding="utf-8")
    numbers = {
        "CHUNK_MIN": spec.CHUNK_MIN, "CHUNK_AVG": spec.CHUNK_AVG, "CHUNK_MAX": spec.CHUNK_MAX,
        "PACK_TARGET": spec.PACK_TARGET, "PACK_MAX_BLOBS": spec.PACK_MAX_BLOBS,
        "MAX_RECORD": spec.MAX_RECORD, "MAX_TREE_RAW": spec.MAX_TREE_RAW,
        "MAX_BLOB_RAW": spec.MAX_BLOB_RAW, "MAX_OBJECT": spec.MAX_OBJECT,
        "MAX_ENTRIES": spec.MAX_ENTRIES, "MAX_TREE_DEPTH": spec.MAX_TREE_DEPTH,
        "MAX_NAME": spec.MAX_NAME, "MAX_XATTR_VALUE": spec.MAX_XATTR_VALUE,
        "KDF_MIN_M_KIB": spec.KDF_MIN_M_KIB, "KDF_MAX_M_KIB": spec.KDF_MAX_M_KIB,
    }
    missing = [f"{k} = {v}" for k, v in numbers.items() if not re.search(rf"\b{v}\b", text)]
    bounds = (f"{spec.KDF_MIN_T} .. {spec.KDF_MAX_T}", f"{spec.KDF_MIN_P} .. {spec.KDF_MAX_P}",
              f"t = {spec.KDF_DEFAULT['t']}, m = {spec.KDF_DEFAULT['m']}")
    strings = [
        *bounds,
        f'"{spec.MAGIC.decode()}"',
        f"format version, u8 = {spec.FORMAT_VERSION}",
        f'"{keys._AAD.decode()}"',
        f'"{keys.CAP_FULL}"', f'"{keys.CAP_WRITE_ONLY}"',
        *(f'"{envelope._info(kind, mode).decode()}"'
          for kind, mode in [(spec.KIND_PACK, spec.MODE_SEALED),
                             (spec.KIND_INDEX, spec.MODE_SHARED),
                             (spec.KIND_SNAPSHOT, spec.MODE_SHARED),
                             (spec.KIND_SNAPSHOT, spec.MODE_SEALED)]),
        f"{envelope.HEADER_LEN}-byte",
    ]
    missing += [s for s in strings if s not in text]
    # Literals the modules use inline, and how the page must state them.
    literals = {
        "pack.py": {'b"blob"': '"blob"', 'b"trailer"': '"trailer"'},
        "index.py": {'b"index"': '"index"'},
        "snapshots.py": {'b"snapshot"': '"snapshot"', 'b"snapshot body"': '"snapshot body"'},
        "chunker.py": {'b"repofs chunker permutation v1"': '"repofs chunker permutation v1"'},
        "keys.py": {'b"repofs v1 blob id key, type %d"': "repofs v1 blob id key, type 1"},
    }
    for module, needles in literals.items():
        source = (ROOT / "repofs" / module).read_text(encoding="utf-8")
        for needle, stated in needles.items():
            assert needle in source, f"repofs/{module} no longer uses {needle}"
            if stated not in text:
                missing.append(needle)
    assert not missing, f"repofs-format.5.md does not state: {missing}"


def test_reference_pattern() -> None:
    text = ('"""See repofs-format(5), TREES and SNAPSHOTS.\n'
            "(repofs-format(5), READ ORDER AND VERIFICATION): x\n"
            "repofs-format(5), CHUNKING, states\n"
            "the write order of repofs-format(5).\n"
            "repofs-format(5), PACKS\nThe next line.\n")
    found = [n for m in _REFERENCE.finditer(text) for n in re.split(r"\s+and\s+", m.group(1))]
    assert found == ["TREES", "SNAPSHOTS", "READ ORDER AND VERIFICATION", "CHUNKING", "PACKS"]


@pytest.mark.skipif(not (shutil.which("go-md2man") and shutil.which("mandoc")),
                    reason="needs go-md2man and mandoc")
def test_pages_render_lint_clean(tmp_path: Path) -> None:
    run = subprocess.run(["bash", str(MAN / "render.sh"), str(tmp_path)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name[:-len(".md")] for p in MAN.glob("*.md"))
