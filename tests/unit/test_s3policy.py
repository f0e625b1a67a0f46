"""The writer policy: every delete and protection change denied, access only below the
prefix, one writer or several."""

from __future__ import annotations

import json

import pytest

from repofs.s3policy import OWNER_ACL, WRITER_NEVER, render, writer_policy


def test_denies_every_way_to_destroy() -> None:
    p = writer_policy("backups", "web1/", ["arn:aws:iam::1:user/w"])
    deny = next(s for s in p["Statement"] if s["Sid"] == "RepofsWriterNeverDeletes")
    assert deny["Effect"] == "Deny" and "Condition" not in deny
    for action in ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutBucketPolicy",
                   "s3:DeleteBucketPolicy", "s3:PutLifecycleConfiguration",
                   "s3:PutBucketVersioning", "s3:PutObjectRetention",
                   "s3:PutObjectLegalHold", "s3:BypassGovernanceRetention",
                   "s3:PutBucketObjectLockConfiguration", "s3:DeleteBucket"):
        assert action in deny["Action"] and action in WRITER_NEVER
    assert deny["Resource"] == ["arn:aws:s3:::backups", "arn:aws:s3:::backups/*"]
    allowed = [a for s in p["Statement"] if s["Effect"] == "Allow"
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    assert not set(allowed) & set(WRITER_NEVER)
    assert not any("Delete" in a or a == "s3:*" for a in allowed)
    acl = next(s for s in p["Statement"] if s["Sid"] == "RepofsWriterNoOtherAcl")
    assert acl["Condition"] == {"StringNotEquals": {"s3:x-amz-acl": OWNER_ACL}}


def test_scoped_to_the_prefix() -> None:
    p = writer_policy("backups", "web1/", ["arn:aws:iam::1:user/w", "arn:aws:iam::1:user/v"])
    objects = next(s for s in p["Statement"] if s["Sid"] == "RepofsWriterObjects")
    assert objects["Resource"] == "arn:aws:s3:::backups/web1/*"
    assert objects["Principal"] == {"AWS": ["arn:aws:iam::1:user/w", "arn:aws:iam::1:user/v"]}
    lists = next(s for s in p["Statement"] if s["Sid"] == "RepofsWriterLists")
    assert lists["Condition"] == {"StringLike": {"s3:prefix": ["web1/*"]}}
    whole = writer_policy("backups", "", ["w"])
    assert "Condition" not in next(s for s in whole["Statement"]
                                   if s["Sid"] == "RepofsWriterLists")
    assert json.loads(render(whole)) == whole
    with pytest.raises(ValueError):
        writer_policy("backups", "", [])
