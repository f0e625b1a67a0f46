"""Index segments: their codec (repofs-format(5), INDEX SEGMENTS).

Each ``create`` writes one new segment naming the packs it wrote and where each
blob sits in them. Segments are never rewritten; the index is their union, held
in memory by ``blobtable`` (and cached locally by ``blobcache``). A segment is
sealed in shared mode so write-only keys can dedup.
"""

from __future__ import annotations

from repofs import spec
from repofs.envelope import HEADER_LEN, ObjectCipher
from repofs.pack import BlobEntry, entry_from_list


def encode_segment(cipher: ObjectCipher, packs: list[tuple[str, list[BlobEntry]]]) -> bytes:
    record = {
        "v": spec.FORMAT_VERSION,
        "packs": [
            {"id": bytes.fromhex(name), "blobs": [e.to_list() for e in entries]}
            for name, entries in packs
        ],
    }
    return cipher.header + cipher.seal(0, spec.pack(record), b"index")


def decode_segment(cipher: ObjectCipher, data: bytes) -> list[tuple[str, list[BlobEntry]]]:
    name = cipher.object_id
    plain = cipher.open(0, memoryview(data)[HEADER_LEN:], b"index")
    f = spec.Fields(spec.unpack(plain, "index segment", name), "index segment", name)
    if f.integer("v") != spec.FORMAT_VERSION:
        raise f.fail("unknown version")
    out = []
    for p in f.items("packs"):
        pf = spec.Fields(p, "index segment", name)
        pack_id = pf.blob("id", size=32).hex()
        rows = pf.items("blobs", spec.PACK_MAX_BLOBS)
        out.append(
            (pack_id, [entry_from_list(r, "index segment", name, spec.MAX_OBJECT) for r in rows])
        )
    return out
