"""The S3 bucket policy that splits a backup writer from the admin.

Why it is generated: the guarantee that a compromised backup host cannot destroy its
backups rests on the writer's credentials lacking every way to delete, and IAM JSON
written by hand gets that wrong (a forgotten DeleteObjectVersion, a lifecycle rule
that expires everything tomorrow). The writer may put, get and list under the
repository's prefix, and read the bucket's versioning and lock settings; an explicit
Deny, which no Allow elsewhere overrides, covers every delete and every change of
policy, lifecycle, versioning, ACLs, object retention and legal holds, including
bypassing GOVERNANCE retention. The admin (prune, key remove) keeps whatever rights
its account grants it; the policy names no admin.
"""

from __future__ import annotations

import json
from typing import Any

OWNER_ACL = "bucket-owner-full-control"
WRITER_READS = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject",
                "s3:GetObjectRetention"]
WRITER_LISTS = ["s3:ListBucket", "s3:ListBucketVersions"]
WRITER_BUCKET = ["s3:GetBucketVersioning", "s3:GetBucketObjectLockConfiguration",
                 "s3:GetBucketLocation"]
WRITER_NEVER = [
    "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersionTagging", "s3:DeleteBucket", "s3:DeleteBucketPolicy",
    "s3:PutBucketPolicy", "s3:PutLifecycleConfiguration", "s3:PutBucketVersioning",
    "s3:PutBucketObjectLockConfiguration", "s3:PutObjectRetention",
    "s3:PutObjectLegalHold", "s3:BypassGovernanceRetention", "s3:PutBucketAcl",
    "s3:PutReplicationConfiguration",
    "s3:PutBucketCORS", "s3:PutBucketWebsite", "s3:PutBucketNotification",
]


def writer_policy(bucket: str, prefix: str, writers: list[str]) -> dict[str, Any]:
    """The bucket policy for ``writers`` (principal ARNs) on ``bucket``/``prefix``
    (``''`` or ending in ``/``)."""
    if not writers:
        raise ValueError("name at least one writer principal")
    principal = {"AWS": writers if len(writers) > 1 else writers[0]}
    bucket_arn = f"arn:aws:s3:::{bucket}"
    objects = f"{bucket_arn}/{prefix}*"
    listing: dict[str, Any] = {
        "Sid": "RepofsWriterLists", "Effect": "Allow", "Principal": principal,
        "Action": WRITER_LISTS, "Resource": bucket_arn}
    if prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}*"]}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "RepofsWriterObjects", "Effect": "Allow", "Principal": principal,
             "Action": WRITER_READS, "Resource": objects},
            listing,
            {"Sid": "RepofsWriterBucketSettings", "Effect": "Allow", "Principal": principal,
             "Action": WRITER_BUCKET, "Resource": bucket_arn},
            {"Sid": "RepofsWriterNeverDeletes", "Effect": "Deny", "Principal": principal,
             "Action": WRITER_NEVER, "Resource": [bucket_arn, f"{bucket_arn}/*"]},
            # every object is put with the ACL bucket-owner-full-control, so the admin (the
            # bucket owner) can read and delete it where objects belong to their writer
            {"Sid": "RepofsWriterGivesObjectsToOwner", "Effect": "Allow",
             "Principal": principal, "Action": "s3:PutObjectAcl", "Resource": objects,
             "Condition": {"StringEquals": {"s3:x-amz-acl": OWNER_ACL}}},
            {"Sid": "RepofsWriterNoOtherAcl", "Effect": "Deny", "Principal": principal,
             "Action": ["s3:PutObjectAcl", "s3:PutObjectVersionAcl"],
             "Resource": f"{bucket_arn}/*",
             "Condition": {"StringNotEquals": {"s3:x-amz-acl": OWNER_ACL}}},
        ],
    }


def render(policy: dict[str, Any]) -> str:
    return json.dumps(policy, indent=2)


__all__ = ["OWNER_ACL", "WRITER_NEVER", "render", "writer_policy"]
