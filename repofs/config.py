"""The config file: the one object that says what a repository is (repofs-format(5),
The config file). Its own module because everything that opens a repository, with a key
(``repository``) or without one (key import, keyless checks), parses it the same way."""

from __future__ import annotations

from repofs import spec
from repofs.errors import RepositoryNotFound, UnsupportedVersion


def encode_config(repo_id: bytes, version: int = spec.REPO_VERSION) -> bytes:
    return spec.pack({"format": "repofs", "v": version, "id": repo_id})


def parse_config(data: bytes) -> tuple[bytes, int]:
    """The repository id and format version (repofs-format(5), The config file)."""
    f = spec.Fields(spec.unpack(data, "config", "config"), "config", "config")
    if f.text("format") != "repofs":
        raise RepositoryNotFound("not a repofs repository (config)")
    v = f.integer("v")
    if v not in spec.REPO_VERSIONS:
        raise UnsupportedVersion(f"repository format version {v} is not supported by this repofs")
    return f.blob("id", size=32), v


def decode_config(data: bytes) -> bytes:
    return parse_config(data)[0]


__all__ = ["decode_config", "encode_config", "parse_config"]
