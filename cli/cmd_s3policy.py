"""``repofs s3-policy``: print the bucket policy of an s3:// repository's writers."""

from __future__ import annotations

import click

from repofs.location import is_s3
from repofs.s3policy import render, writer_policy


@click.command("s3-policy")
@click.argument("location")
@click.option("--writer", "writers", metavar="PRINCIPAL", multiple=True, required=True,
              help="ARN of a backup writer (user or role); may be repeated.")
def s3_policy(location: str, writers: tuple[str, ...]) -> None:
    """Print the bucket policy that lets WRITERs put, get and list the repository at
    LOCATION (s3://host/bucket[/prefix]) and denies them every delete and every change
    of policy, lifecycle, versioning and retention. Apply it as the admin, e.g. with
    'aws s3api put-bucket-policy --bucket B --policy file://policy.json'.
    """
    if not is_s3(location):
        raise click.UsageError("give an s3://HOST[:PORT]/BUCKET[/PREFIX] location")
    from repofs.s3location import parse_url
    loc = parse_url(location)
    click.echo(render(writer_policy(loc.bucket, loc.prefix, list(writers))))


COMMANDS = [s3_policy]
