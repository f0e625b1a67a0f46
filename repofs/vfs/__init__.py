"""Snapshots as a file system, without FUSE: the model ``repofs mount`` serves.

``SnapshotFS`` is the whole interface; ``repofs.fuse`` adapts it to pyfuse3.
The package is split by job: ``nodes`` (what a name stands for and its
attributes), ``layout`` (ids/, snapshots/, hosts/, tags/), ``history``
(history/), ``reader`` (chunks a read needs and their cache), ``ahead`` (fetching them
before they are read), ``fs`` (inodes).
"""

from repofs.vfs.fs import ROOT, FsStats, SnapshotFS, Source, WouldBlock
from repofs.vfs.layout import local_time
from repofs.vfs.nodes import LONG_TTL, SHORT_TTL, Attr, Presentation
from repofs.vfs.reader import Chunk, ChunkCache, ReadPlan

__all__ = ["LONG_TTL", "ROOT", "SHORT_TTL", "Attr", "Chunk", "ChunkCache", "FsStats",
           "Presentation", "ReadPlan", "SnapshotFS", "Source", "WouldBlock", "local_time"]
