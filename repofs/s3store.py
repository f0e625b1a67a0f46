"""An ``s3://`` repository: the write-once ``WriterStore`` on S3-compatible object storage.

Why a module of its own: it is the one owner of the S3 client library (boto3/botocore),
so no other module knows S3 exists beyond ``location`` picking it.

Write-once without trusting the server: every object is created by one ``PutObject``
with ``If-None-Match: *`` and ``Content-MD5`` (nothing is ever visible half-written,
and lock buckets require the checksum); 412 means the name exists, and is success
only if the stored object hashes to its name. Some servers (Ceph RGW 16.2) ignore
``If-None-Match`` in versioned and object-lock buckets, so a writer can put a new
version over a name: when the current version does not hash to its name, this store
looks through the object's versions for the one that does, reads that one from then
on (ranged reads are pinned to it), and tells its ``overwrite`` listener (the damage
log: the overwrite means a writer's credentials are in hostile hands).

Credentials only the standard way (AWS_* variables, AWS_PROFILE, the shared files);
``admin=True`` uses the profile REPOFS_S3_ADMIN_PROFILE names. Never the URL.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Self

import boto3
import botocore.config
import botocore.exceptions

from repofs import crypto
from repofs.errors import (
    IntegrityError,
    ObjectExists,
    RemoteError,
    RepositoryExists,
    RepositoryNotFound,
)
from repofs.rangecache import WindowCache
from repofs.s3location import S3Location, is_s3, parse_url
from repofs.spec import CONFIG_NAME, MAX_OBJECT, NAMESPACES, NS_DATA
from repofs.store import valid_name

ADMIN_PROFILE_ENV = "REPOFS_S3_ADMIN_PROFILE"
MAX_CONFIG = 64 * 1024
_BODY_RETRIES = 4  # a body cut off mid-read; botocore retries the request itself
_PINS = 65536  # objects whose version and size are remembered
# 409 to a conditional put (another on the name in progress): botocore leaves it, put retries
_CONFLICTS = ("ConditionalRequestConflict", "OperationAborted")
_CONFLICT_RETRIES = 6

Overwrite = Callable[[IntegrityError], None]


def _client(loc: S3Location, admin: bool) -> Any:
    """A botocore S3 client: standard retries (5xx, 429/SlowDown, timeouts, resets) with
    backoff, bounded attempts and timeouts, path-style addressing, checksums only where
    we send them (Content-MD5: every S3 server understands it)."""
    profile = os.environ.get(ADMIN_PROFILE_ENV) if admin else None
    try:
        session = boto3.session.Session(profile_name=profile or None)
    except botocore.exceptions.BotoCoreError as e:
        raise RemoteError(f"{loc}: {e}") from None
    try:  # AWS_MAX_ATTEMPTS: botocore's own variable, which an explicit config hides
        attempts = max(1, min(int(os.environ.get("AWS_MAX_ATTEMPTS") or 6), 20))
    except ValueError:
        attempts = 6
    config = botocore.config.Config(
        retries={"mode": "standard", "max_attempts": attempts},
        connect_timeout=10, read_timeout=60, max_pool_connections=32,
        s3={"addressing_style": "path"}, signature_version="s3v4",
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or \
        session.region_name or "us-east-1"
    return session.client("s3", endpoint_url=loc.endpoint, region_name=region, config=config)


def _code(e: botocore.exceptions.ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _status(e: botocore.exceptions.ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


class S3Store:
    """``WriterStore`` on one bucket and key prefix. Thread-safe: botocore clients are, and
    the version pins are behind a lock."""

    fork_safe = False  # a forked copy would share the connection pool
    # requests wait a round trip: restore's prefetch, create's uploads run this many at once
    parallel_reads = 8
    parallel_writes = 4

    def __init__(self, loc: S3Location, admin: bool = False) -> None:
        self.location = loc
        self._s3 = _client(loc, admin)
        self._lock = threading.Lock()
        self._pins: OrderedDict[str, tuple[str | None, int]] = OrderedDict()
        self._versioned: bool | None = None
        self.overwrite: Overwrite | None = None  # told of each overwritten object found
        self.overwritten: dict[str, str] = {}  # "ns/name" -> the version that verifies
        self._lock_rule: tuple[str, int] | None = None  # bucket default retention
        self._lock_read = False
        self._windows = WindowCache(self._range)

    # -- open / create --------------------------------------------------------------------
    @classmethod
    def open(cls, loc: S3Location, admin: bool = False) -> Self:
        store = cls(loc, admin)
        store.read_config()  # RepositoryNotFound if there is none
        return store

    @classmethod
    def create(cls, loc: S3Location, config: bytes) -> S3Store:
        store = cls(loc)
        got = store._call(store._s3.list_objects_v2, "list", Bucket=loc.bucket,
                          Prefix=loc.prefix, MaxKeys=1)
        if got.get("KeyCount", 0) or got.get("Contents"):
            raise RepositoryExists(f"{loc} is not empty")
        if not store._create(store._key_config(), config) and store.read_config() != config:
            # (the same bytes: our own put, whose answer was lost and which was retried;
            # a config holds a random id, so nobody else's is equal)
            raise RepositoryExists(f"{loc} already holds a repository")
        return store

    def close(self) -> None:
        self._s3.close()

    # -- plumbing -------------------------------------------------------------------------
    def _key(self, namespace: str, name: str) -> str:
        if namespace not in NAMESPACES:
            raise ValueError(f"unknown namespace {namespace!r}")
        if not valid_name(name):
            raise ValueError(f"invalid object name {name!r}")
        return f"{self.location.prefix}{namespace}/{name}"

    def _key_config(self) -> str:
        return f"{self.location.prefix}{CONFIG_NAME}"

    def _call(self, method: Callable[..., Any], what: str, **kw: Any) -> Any:
        """One request; botocore has retried what can be retried. A missing object is
        FileNotFoundError; everything else one RemoteError naming the request."""
        try:
            return method(**kw)
        except botocore.exceptions.ClientError as e:
            code, status = _code(e), _status(e)
            if code in ("NoSuchKey", "404", "NotFound", "NoSuchVersion") or (
                    status == 404 and code != "NoSuchBucket"):
                raise FileNotFoundError(2, f"{self.location}: {what}: not found") from None
            if code == "NoSuchBucket":
                raise RepositoryNotFound(f"{self.location}: the bucket does not exist") \
                    from None
            msg = e.response.get("Error", {}).get("Message") or code or f"HTTP {status}"
            raise RemoteError(f"{self.location}: {what}: {msg} [{code or status}]") from None
        except botocore.exceptions.NoCredentialsError:
            raise RemoteError(f"{self.location}: no S3 credentials: set AWS_ACCESS_KEY_ID and "
                              "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE") from None
        except botocore.exceptions.BotoCoreError as e:
            raise RemoteError(f"{self.location}: {what}: {e}") from None

    def _read(self, what: str, limit: int, **kw: Any) -> bytes:
        """GET (whole or a range) and read the body, retrying a body cut off mid-way."""
        for attempt in range(_BODY_RETRIES):
            got = self._call(self._s3.get_object, what, Bucket=self.location.bucket, **kw)
            size = int(got.get("ContentLength", 0))
            if size > limit:  # sizes checked before anything is read into memory
                got["Body"].close()
                raise IntegrityError("object", what, f"the server answered {size} bytes, "
                                     f"more than the {limit} asked for")
            try:
                return bytes(got["Body"].read())
            except (botocore.exceptions.BotoCoreError, OSError) as e:
                if attempt == _BODY_RETRIES - 1:
                    raise RemoteError(f"{self.location}: {what}: {e}") from None
                time.sleep(0.2 * 2 ** attempt)
        raise AssertionError("unreachable")

    def _create(self, key: str, data: bytes | memoryview) -> bool:
        """PutObject if no object has the key; False if the server says one has (412).
        In a bucket with a default Object Lock retention, HEAD checks the server applied it
        (no lock headers are sent: the writer needs no right to set retention)."""
        body = bytes(data)
        for attempt in range(_CONFLICT_RETRIES):
            try:
                self._s3.put_object(
                    Bucket=self.location.bucket, Key=key, Body=body, IfNoneMatch="*",
                    ACL="bucket-owner-full-control",  # the admin owns what writers put
                    ContentMD5=crypto.content_md5(body))
                break
            except botocore.exceptions.ClientError as e:
                if _status(e) == 412 or _code(e) == "PreconditionFailed":
                    return False
                if _code(e) in _CONFLICTS and attempt < _CONFLICT_RETRIES - 1:
                    time.sleep(0.1 * 2 ** attempt)  # another put of the name is under way
                    continue
                self._call(_raise(e), f"put {key}")
            except botocore.exceptions.BotoCoreError as e:
                raise RemoteError(f"{self.location}: put {key}: {e}") from None
        rule = self.lock_rule()
        if rule is not None:
            self._check_lock(key, *rule)
        return True

    def lock_rule(self) -> tuple[str, int] | None:
        """The bucket's default Object Lock retention (mode, days), or None."""
        if not self._lock_read:
            try:
                got = self._s3.get_object_lock_configuration(Bucket=self.location.bucket)
                conf = got.get("ObjectLockConfiguration", {})
                rule = conf.get("Rule", {}).get("DefaultRetention", {})
                days = int(rule.get("Days", 0)) or 365 * int(rule.get("Years", 0))
                self._lock_rule = (str(rule["Mode"]), days) if days and rule.get("Mode") \
                    else None
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
                self._lock_rule = None  # no lock configuration (or may not read it)
            self._lock_read = True
        return self._lock_rule

    def _check_lock(self, key: str, mode: str, days: int) -> None:
        """The new object must be locked as the bucket's rule says, for (nearly) ``days``."""
        head = self._call(self._s3.head_object, f"head {key}", Bucket=self.location.bucket,
                          Key=key)
        until = head.get("ObjectLockRetainUntilDate")
        if head.get("ObjectLockMode") != mode or until is None or \
                until.timestamp() < time.time() + days * 86400 - 3600:
            raise RemoteError(f"{self.location}: the server did not lock {key} ({mode} for "
                              f"{days} days) as the bucket's default retention says")

    def set_lock_rule(self, mode: str, days: int) -> None:
        """Make every new object locked for ``days`` (bucket default retention; admin)."""
        self._call(self._s3.put_object_lock_configuration, "set the Object Lock retention",
                   Bucket=self.location.bucket, ObjectLockConfiguration={
                       "ObjectLockEnabled": "Enabled",
                       "Rule": {"DefaultRetention": {"Mode": mode, "Days": days}}})
        self._lock_read = False
        if self.lock_rule() != (mode, days):
            raise RemoteError(f"{self.location}: the bucket did not take the Object Lock "
                              "retention (is Object Lock enabled on it?)")

    def _is_versioned(self) -> bool:
        if self._versioned is None:
            try:
                got = self._s3.get_bucket_versioning(Bucket=self.location.bucket)
                self._versioned = got.get("Status") in ("Enabled", "Suspended")
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
                self._versioned = True  # cannot tell: look at versions, to be safe
        return self._versioned

    def _versions(self, key: str, markers: bool = False) -> list[dict[str, Any]]:
        """Every version of one key, newest first (S3 lists them so); ``markers``: delete
        markers too."""
        out: list[dict[str, Any]] = []
        kw: dict[str, Any] = {"Bucket": self.location.bucket, "Prefix": key}
        while True:
            got = self._call(self._s3.list_object_versions, f"list versions of {key}", **kw)
            out += [v for v in got.get("Versions", []) if v.get("Key") == key]
            if markers:
                out += [v for v in got.get("DeleteMarkers", []) if v.get("Key") == key]
            if not got.get("IsTruncated"):
                return out
            kw["KeyMarker"] = got.get("NextKeyMarker")
            kw["VersionIdMarker"] = got.get("NextVersionIdMarker")

    def _pin(self, namespace: str, name: str) -> tuple[str | None, int]:
        """The version ranged reads of an object use, and its size: in a versioned bucket
        the one version that exists, or (several) the newest whose bytes match the name."""
        key = self._key(namespace, name)
        with self._lock:
            pin = self._pins.get(key)
            if pin is not None:
                self._pins.move_to_end(key)
                return pin
        if not self._is_versioned():
            head = self._call(self._s3.head_object, f"head {namespace}/{name}",
                              Bucket=self.location.bucket, Key=key)
            pin = (None, int(head.get("ContentLength", 0)))
        else:
            versions = self._versions(key)
            if not versions:
                raise FileNotFoundError(2, f"{self.location}: {namespace}/{name}: not found")
            if len(versions) == 1:
                pin = (str(versions[0]["VersionId"]), int(versions[0]["Size"]))
            else:
                pin = self._resolve(namespace, name, versions)[0]
        with self._lock:
            self._pins[key] = pin
            while len(self._pins) > _PINS:
                self._pins.popitem(last=False)
        return pin

    def _resolve(self, namespace: str, name: str,
                 versions: list[dict[str, Any]]) -> tuple[tuple[str | None, int], bytes]:
        """Several versions under one name: the newest whose bytes hash to the name (which
        is then reported as overwritten), else the current one (the caller's check fails)."""
        key = self._key(namespace, name)
        current: tuple[tuple[str | None, int], bytes] | None = None
        for v in versions:
            vid = str(v["VersionId"])
            data = self._read(f"{namespace}/{name}", MAX_OBJECT, Key=key, VersionId=vid)
            if current is None:
                current = ((vid, len(data)), data)
            if crypto.object_name(data) == name:
                if v is not versions[0]:
                    self._report(namespace, name, vid, len(versions))
                return (vid, len(data)), data
        assert current is not None
        return current

    def _report(self, namespace: str, name: str, version: str, count: int) -> None:
        self.overwritten[f"{namespace}/{name}"] = version
        if self.overwrite is not None:
            self.overwrite(IntegrityError(
                namespace, name, f"overwritten in the bucket ({count} versions): read the "
                f"version that matches its name ({version}); a writer's credentials wrote "
                "the newer one"))

    # -- WriterStore ----------------------------------------------------------------------
    def put(self, namespace: str, name: str, data: bytes | memoryview) -> bool:
        """Create an object; False if it was there already with the same bytes (a retried
        put that gets 412 is success only if the stored object verifies)."""
        if self._create(self._key(namespace, name), data):
            return True
        if crypto.object_name(self.get(namespace, name)) == name and \
                crypto.object_name(data) == name:
            return False
        raise ObjectExists(f"{namespace}/{name} already exists with other content")

    def get(self, namespace: str, name: str) -> bytes:
        key = self._key(namespace, name)
        with self._lock:
            pin = self._pins.get(key)
        kw = {"VersionId": pin[0]} if pin and pin[0] else {}
        data = self._read(f"{namespace}/{name}", MAX_OBJECT, Key=key, **kw)
        if crypto.object_name(data) == name or pin is not None or not self._is_versioned():
            return data
        versions = self._versions(key)
        if len(versions) < 2:
            return data  # damaged, not overwritten: the caller names it
        pin, data = self._resolve(namespace, name, versions)
        with self._lock:
            self._pins[key] = pin
        return data

    def get_range(self, namespace: str, name: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        size = self._pin(namespace, name)[1]
        if offset >= size:
            return b""
        if namespace == NS_DATA:  # blobs of a pack are read in runs: by windows
            return self._windows.read(namespace, name, offset, length, size)
        return self._range(namespace, name, offset, length)

    def _range(self, namespace: str, name: str, offset: int, length: int) -> bytes:
        vid, size = self._pin(namespace, name)
        kw = {"VersionId": vid} if vid else {}
        return self._read(f"{namespace}/{name}", length, Key=self._key(namespace, name),
                          Range=f"bytes={offset}-{min(offset + length, size) - 1}", **kw)

    def size(self, namespace: str, name: str) -> int:
        return self._pin(namespace, name)[1]

    def exists(self, namespace: str, name: str) -> bool:
        try:
            self._call(self._s3.head_object, f"head {namespace}/{name}",
                       Bucket=self.location.bucket, Key=self._key(namespace, name))
            return True
        except FileNotFoundError:
            return False

    def list(self, namespace: str) -> Iterator[str]:
        if namespace not in NAMESPACES:
            raise ValueError(f"unknown namespace {namespace!r}")
        prefix = f"{self.location.prefix}{namespace}/"
        names: list[str] = []
        kw: dict[str, Any] = {"Bucket": self.location.bucket, "Prefix": prefix}
        while True:
            got = self._call(self._s3.list_objects_v2, f"list {namespace}", **kw)
            for obj in got.get("Contents", []):
                name = str(obj.get("Key", ""))[len(prefix):]
                if valid_name(name):
                    names.append(name)
            token = got.get("NextContinuationToken")
            if not got.get("IsTruncated") or not token:
                return iter(names)
            kw["ContinuationToken"] = token

    def read_config(self) -> bytes:
        """The config: in a versioned bucket its oldest version (a writer may put others)."""
        key = self._key_config()
        kw: dict[str, Any] = {}
        try:
            if self._is_versioned():
                versions = self._versions(key)
                if versions:
                    kw["VersionId"] = versions[-1]["VersionId"]
            return self._read("config", MAX_CONFIG, Key=key, **kw)
        except FileNotFoundError:
            raise RepositoryNotFound(f"no repofs repository at {self.location}") from None

    def config_overwritten(self) -> bool:
        """Whether the config has several versions (a writer put one over it)."""
        return self._is_versioned() and len(self._versions(self._key_config())) > 1


class AdminS3Store(S3Store):
    """``S3Store`` with delete, for prune and ``key remove`` with the admin's credentials."""

    def delete(self, namespace: str, name: str) -> bool:
        """Remove every version of one object (a delete marker would free nothing); False
        if there was none. An object still under Object Lock raises PermissionError."""
        key = self._key(namespace, name)
        with self._lock:
            self._pins.pop(key, None)
        self._windows.forget(namespace, name)
        if not self._is_versioned():
            if not self.exists(namespace, name):
                return False
            self._delete(key, None)
            return True
        versions = self._versions(key, markers=True)
        for v in versions:
            self._delete(key, str(v["VersionId"]))
        return bool(versions)

    def _delete(self, key: str, version: str | None) -> None:
        kw = {"VersionId": version} if version else {}
        try:
            self._s3.delete_object(Bucket=self.location.bucket, Key=key, **kw)
        except botocore.exceptions.ClientError as e:
            if _code(e) == "AccessDenied" and version and self._locked(key, version):
                raise PermissionError(errno.EPERM, "the object is locked (S3 Object Lock)",
                                      key) from None
            if _code(e) == "AccessDenied":
                raise RemoteError(f"{self.location}: these credentials may not delete {key} "
                                  f"(the admin's profile: {ADMIN_PROFILE_ENV})") from None
            self._call(_raise(e), f"delete {key}")

    def _locked(self, key: str, version: str) -> bool:
        """Whether Object Lock (retention or legal hold) holds this version now."""
        head = self._call(self._s3.head_object, f"head {key}", Bucket=self.location.bucket,
                          Key=key, VersionId=version)
        until = head.get("ObjectLockRetainUntilDate")
        return head.get("ObjectLockLegalHoldStatus") == "ON" or (
            until is not None and until.timestamp() > time.time())

    def extend_lock(self, namespace: str, name: str) -> bool:
        """Lock the current version of an object for the bucket's retention days from now,
        unless it is locked nearly that long already; True if it was extended.
        ``namespace`` ``config`` (with any name) is the repository's config."""
        if namespace == CONFIG_NAME:
            key, vid = self._key_config(), None
            if self._is_versioned():
                versions = self._versions(key)
                vid = str(versions[-1]["VersionId"]) if versions else None
        else:
            key, vid = self._key(namespace, name), self._pin(namespace, name)[0]
        rule = self.lock_rule()
        if rule is None:
            return False
        mode, days = rule
        kw = {"VersionId": vid} if vid else {}
        head = self._call(self._s3.head_object, f"head {key}", Bucket=self.location.bucket,
                          Key=key, **kw)
        until = time.time() + days * 86400
        held = head.get("ObjectLockRetainUntilDate")
        if held is not None and held.timestamp() >= until - min(86400, days * 8640):
            return False  # renewed lately (within a tenth of DAYS, at most a day)
        self._call(self._s3.put_object_retention, f"lock {key}",
                   Bucket=self.location.bucket, Key=key, **kw,
                   Retention={"Mode": mode, "RetainUntilDate": datetime.fromtimestamp(
                       until, UTC)})
        return True

    def mtime_ns(self, namespace: str, name: str) -> int:
        """When an object was written (its current version's Last-Modified)."""
        head = self._call(self._s3.head_object, f"head {namespace}/{name}",
                          Bucket=self.location.bucket, Key=self._key(namespace, name))
        return int(head["LastModified"].timestamp() * 1e9)


def _raise(e: Exception) -> Callable[..., Any]:
    def again(**_kw: Any) -> Any:
        raise e
    return again


__all__ = ["ADMIN_PROFILE_ENV", "AdminS3Store", "S3Location", "S3Store", "is_s3", "parse_url"]
