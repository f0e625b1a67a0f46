"""What a restore is asked to do (``RestoreOptions``) and what it did (``RestoreStats``).

Kept apart from the code that walks (``restorer``) and writes (``restorewrite``) so
both, and the CLI, share one definition of each option and counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from repofs.patterns import PatternSet

NEVER, IF_CHANGED, ALWAYS = "never", "if-changed", "always"
OVERWRITE_MODES = (NEVER, IF_CHANGED, ALWAYS)
CREATE, REPLACE, UPDATE, UNCHANGED, DELETE = "create", "overwrite", "update", "unchanged", \
    "delete"


@dataclass
class RestoreOptions:
    includes: PatternSet = field(default_factory=lambda: PatternSet([]))
    excludes: PatternSet = field(default_factory=lambda: PatternSet([]))
    numeric_ids: bool = False
    partial: bool = False  # keep what verified of a damaged file, the rest left as holes
    special: bool = False  # recreate set-user-ID/-group-ID bits, capabilities, devices
    overwrite: str = NEVER  # what to do with a name that exists and differs
    delete: bool = False  # remove what the snapshot does not hold (below the target)
    delete_roots: tuple[bytes, ...] = ()  # ... only at or below these snapshot paths
    dry_run: bool = False  # decide and count, write nothing
    verify: bool = False  # read each file back and compare it with the snapshot
    record: bool = False  # keep each path acted on in stats.actions



@dataclass(frozen=True)
class DamagedFile:
    """A file that did not verify: its damaged byte ranges, and whether it was kept
    (``partial``: restored with those ranges left as holes) or not created."""

    path: bytes  # in the target
    ranges: tuple[tuple[int, int], ...]
    kept: bool


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    others: int = 0
    bytes_written: int = 0
    damaged: list[DamagedFile] = field(default_factory=list)
    damaged_dirs: list[bytes] = field(default_factory=list)  # contents lost with their tree
    skipped: int = 0  # entries not restored for a reason of the target (exists, refused)
    warnings: list[str] = field(default_factory=list)
    created: int = 0  # entries (directories too) made where nothing was
    replaced: int = 0  # entries written over a different one (--overwrite)
    updated: int = 0  # files of the right content whose metadata was set (if-changed)
    unchanged: int = 0  # entries already there and identical: left alone
    deleted: int = 0  # names removed by --delete (a directory counts once)
    temps_removed: int = 0  # temporary files of an interrupted restore removed
    verified: int = 0  # files read back by --verify
    mismatches: list[tuple[bytes, str]] = field(default_factory=list)  # --verify
    actions: list[tuple[str, bytes]] = field(default_factory=list)  # with options.record


__all__ = ["ALWAYS", "CREATE", "DELETE", "IF_CHANGED", "NEVER", "OVERWRITE_MODES", "REPLACE",
           "UNCHANGED", "UPDATE", "DamagedFile", "RestoreOptions", "RestoreStats"]
