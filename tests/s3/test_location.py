"""s3:// locations: what parses, and what is refused (credentials, queries, odd keys)."""

from __future__ import annotations

import pytest

from repofs.errors import RepositoryNotFound
from repofs.location import is_remote, is_s3
from repofs.s3location import S3Location, parse_url


@pytest.mark.parametrize(("url", "want"), [
    ("s3://s3.example.com/backups", S3Location("s3.example.com", "backups")),
    ("s3://s3.example.com:8443/backups/web1/",
     S3Location("s3.example.com", "backups", "web1/", 8443)),
    ("s3+http://127.0.0.1:7480/b-1.x/a/b",
     S3Location("127.0.0.1", "b-1.x", "a/b/", 7480, secure=False)),
])
def test_parses(url: str, want: S3Location) -> None:
    got = parse_url(url)
    assert got == want
    assert is_s3(url) and is_remote(url)
    assert parse_url(str(got)) == got  # str() gives the location back


def test_endpoint_scheme_follows_the_location() -> None:
    assert parse_url("s3://h/bucket").endpoint == "https://h"
    assert parse_url("s3+http://h:1/bucket").endpoint == "http://h:1"


@pytest.mark.parametrize("url", [
    "s3://AKIA:secret@host/bucket",  # credentials never in the URL
    "s3://key@host/bucket",
    "s3://host/bucket?x=1",
    "s3://host/bucket#frag",
    "s3://host/",
    "s3://host/B",  # not a bucket name
    "s3://host/bucket/../other",
    "s3://host/bucket/a//b",
    "s3://-host/bucket/",
    "s3+https://host/bucket",
    "s3://host:99999/bucket",
])
def test_refuses(url: str) -> None:
    with pytest.raises(RepositoryNotFound):
        parse_url(url)


def test_paths_and_ssh_are_not_s3() -> None:
    assert not is_s3("/srv/s3://x")
    assert not is_s3("ssh://host/path")
