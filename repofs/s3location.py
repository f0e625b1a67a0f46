"""Where an s3:// repository lives: endpoint, bucket and key prefix, parsed and checked.

Why apart from ``s3store``: reading a location needs no S3 client library (which
costs 0.1 s to import), and ``location`` and ``repofs s3-policy`` only need this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from repofs.errors import RepositoryNotFound

SCHEMES = ("s3", "s3+http")
_BUCKET_RE = re.compile(r"\A[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_PREFIX_RE = re.compile(r"\A[A-Za-z0-9._/-]{0,512}\Z")
_HOST_RE = re.compile(r"\A[A-Za-z0-9.-]{1,253}\Z|\A\[[0-9A-Fa-f:.]+\]\Z")


@dataclass(frozen=True)
class S3Location:
    """Where an s3:// repository lives: endpoint, bucket, and a key prefix ('' or 'a/b/')."""

    host: str
    bucket: str
    prefix: str = ""
    port: int | None = None
    secure: bool = True

    @property
    def endpoint(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"{'https' if self.secure else 'http'}://{self.host}{port}"

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        path = f"/{self.bucket}/{self.prefix}".rstrip("/")
        return f"{'s3' if self.secure else 's3+http'}://{self.host}{port}{path}"


def is_s3(location: str) -> bool:
    return location.split("://", 1)[0] in SCHEMES and "://" in location


def parse_url(url: str) -> S3Location:
    """``s3://HOST[:PORT]/BUCKET[/PREFIX]`` (https) or ``s3+http://HOST:PORT/BUCKET[/PREFIX]``;
    refuse credentials, queries and anything not a plain bucket and key prefix."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise RepositoryNotFound(f"invalid repository location {url!r}: {e}") from None
    if parts.username is not None or parts.password is not None:
        raise RepositoryNotFound("credentials do not belong in the repository location: use "
                                 "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
    host = parts.netloc.rsplit(":", 1)[0] if port else parts.netloc
    if parts.scheme not in SCHEMES or parts.query or parts.fragment or \
            not _HOST_RE.match(host) or host.startswith(("-", ".")):
        raise RepositoryNotFound(f"invalid repository location {url!r}: use "
                                 "s3://HOST[:PORT]/BUCKET[/PREFIX]")
    bucket, _, prefix = parts.path.lstrip("/").partition("/")
    prefix = prefix.strip("/")
    if not _BUCKET_RE.match(bucket):
        raise RepositoryNotFound(f"invalid bucket name in repository location {url!r}")
    if not _PREFIX_RE.match(prefix) or any(p in ("", ".", "..") for p in prefix.split("/")
                                           if prefix):
        raise RepositoryNotFound(f"invalid key prefix in repository location {url!r}")
    return S3Location(host=host, bucket=bucket, prefix=f"{prefix}/" if prefix else "",
                      port=port, secure=parts.scheme == "s3")


__all__ = ["SCHEMES", "S3Location", "is_s3", "parse_url"]
