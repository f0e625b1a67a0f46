"""The writer/admin split on a real RGW: under the policy ``repofs s3-policy`` prints, a
writer backs up but cannot delete or unprotect anything, even with an extra Allow of
every action (the explicit Deny wins); the admin profile (REPOFS_S3_ADMIN_PROFILE)
forgets and prunes, and what is kept still restores."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import botocore.exceptions
import pytest

from ..integration.harness import REPOFS
from .ceph import Ceph
from .conftest import client, s3_cli
from .test_s3_cli import keys_in, make_tree

ADMIN = "admin passphrase"


def denied(call: object, **kw: object) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(**kw)  # type: ignore[operator]
    assert e.value.response["Error"]["Code"] == "AccessDenied"


def test_writer_cannot_delete_and_admin_prunes(ceph: Ceph, lock_bucket: str,
                                               shm_dir: Path) -> None:
    writer = ceph.user(f"writer-{lock_bucket[-6:]}")
    src = make_tree(shm_dir)
    cli = s3_cli(ceph, lock_bucket, shm_dir, user=writer)
    principal = f"arn:aws:iam:::user/{writer.uid}"
    out = subprocess.run([REPOFS, "s3-policy", str(cli.repo), "--writer", principal],
                         capture_output=True, check=True, text=True).stdout
    policy = json.loads(out)
    # a careless admin also allows everything: the explicit Deny must still hold
    policy["Statement"].append({"Effect": "Allow", "Principal": {"AWS": principal},
                                "Action": "s3:*", "Resource": [
                                    f"arn:aws:s3:::{lock_bucket}",
                                    f"arn:aws:s3:::{lock_bucket}/*"]})
    admin = client(ceph)
    admin.put_bucket_policy(Bucket=lock_bucket, Policy=json.dumps(policy))

    cli.run("init", env={"REPOFS_ADMIN_PASSPHRASE": ADMIN})
    first = cli.create(str(src))["snapshot"]
    (src / "big").write_bytes(b"replaced")
    cli.create(str(src))

    w = client(ceph, writer)
    pack = keys_in(admin, lock_bucket, "repo/data/")[0]
    version = admin.list_object_versions(Bucket=lock_bucket, Prefix=pack)["Versions"][0]
    denied(w.delete_object, Bucket=lock_bucket, Key=pack)
    denied(w.delete_object, Bucket=lock_bucket, Key=pack, VersionId=version["VersionId"])
    denied(w.put_bucket_versioning, Bucket=lock_bucket,
           VersioningConfiguration={"Status": "Suspended"})
    denied(w.put_bucket_lifecycle_configuration, Bucket=lock_bucket, LifecycleConfiguration={
        "Rules": [{"ID": "x", "Status": "Enabled", "Filter": {"Prefix": ""},
                   "Expiration": {"Days": 1}}]})
    denied(w.put_bucket_policy, Bucket=lock_bucket, Policy=json.dumps(policy))
    denied(w.delete_bucket_policy, Bucket=lock_bucket)
    cli.run("forget", first, env={"REPOFS_ADMIN_PASSPHRASE": ADMIN})  # a record: no delete
    snaps = set(keys_in(admin, lock_bucket, "repo/snapshots/"))
    gone = next(k for k in snaps if k.endswith(first))
    # prune with the writer's credentials: the server refuses the delete, prune says so
    r = cli.run("prune", "--grace", "0", env={"REPOFS_ADMIN_PASSPHRASE": ADMIN}, expect=2)
    assert "may not delete" in r.err, r.err
    assert set(keys_in(admin, lock_bucket, "repo/snapshots/")) == snaps

    # the admin's profile: prune deletes every version of the forgotten snapshot
    creds = shm_dir / "aws-credentials"
    a = ceph.admin()
    creds.write_text(f"[repofs-admin]\naws_access_key_id = {a.access_key}\n"
                     f"aws_secret_access_key = {a.secret_key}\n")
    admin_env = {"REPOFS_ADMIN_PASSPHRASE": ADMIN, "REPOFS_S3_ADMIN_PROFILE": "repofs-admin",
                 "AWS_SHARED_CREDENTIALS_FILE": str(creds)}
    assert "delete 1 forgotten snapshots" in cli.run("prune", "--grace", "0",
                                                     env=admin_env).text
    left = admin.list_object_versions(Bucket=lock_bucket, Prefix=gone)
    assert not left.get("Versions") and not left.get("DeleteMarkers")
    assert set(keys_in(admin, lock_bucket, "repo/snapshots/")) == snaps - {gone}

    # key add with the writer's credentials; key remove only with the admin's
    added = cli.run("key", "add", "--write-only", "--json",
                    env={"REPOFS_NEW_PASSPHRASE": "write only"}).json()
    name = added["key"]  # type: ignore[call-overload,index]
    r = cli.run("key", "remove", name[:8], env={"REPOFS_ADMIN_PASSPHRASE": ADMIN}, expect=2)
    assert "may not delete" in r.err, r.err
    assert f"repo/keys/{name}" in keys_in(admin, lock_bucket, "repo/keys/")
    cli.run("key", "remove", name[:8], env=admin_env)
    assert f"repo/keys/{name}" not in keys_in(admin, lock_bucket, "repo/keys/")
    assert "no problems found" in cli.run("check").text  # and the rest is whole
