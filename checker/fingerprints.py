"""A compact map from URL fingerprints to the first row that named them.

Deduplication must remember every URL of the list, so it is the one thing in a
run that grows with the list. A dict of strings costs about 150 bytes a URL;
this open-addressing table of 64-bit fingerprints costs 8 bytes a slot for the
fingerprint and 4 (a row number) or 8 (a file offset) for the value, between
half and three-quarters full: about 20 bytes a URL.

The table is split into `SHARDS` tables by the fingerprint's top bits, each
growing on its own: growing copies one shard, never the whole map, so memory
never holds two full copies at once. A shard grows by half (not double) when
it is three-quarters full, so the map is never more than half empty: at a
million URLs, doubling left it 48% full, 24 MB.

The fingerprint is Python's own string hash (SipHash, 64 bits, salted per
process: stable within a run, which is all dedup needs). Two different URLs with
the same fingerprint would be taken for duplicates; at a million URLs the odds
are about 3 in 100 million.
"""

from __future__ import annotations

from array import array

SHARDS = 64
_SHARD_SHIFT = 58  # 64-bit fingerprints: the top 6 bits choose the shard


class _Shard:
    __slots__ = ("count", "keys", "size", "values")

    def __init__(self, capacity: int, typecode: str) -> None:
        self.keys = array("q", bytes(8 * capacity))  # 0 marks an empty slot
        self.values = array(typecode, bytes(array(typecode).itemsize * capacity))
        self.size = capacity
        self.count = 0

    def probe(self, fp: int) -> tuple[int, bool]:
        """The slot holding `fp`, or the empty slot where it would go (linear probing)."""
        keys, size = self.keys, self.size
        i = fp % size
        while True:
            slot = keys[i]
            if slot == fp or slot == 0:
                return i, slot == fp
            i += 1
            if i == size:
                i = 0

    def full(self) -> bool:
        return self.count * 4 > self.size * 3

    def grown(self, typecode: str) -> _Shard:
        bigger = _Shard(self.size + self.size // 2, typecode)
        for fp, value in zip(self.keys, self.values, strict=True):
            if fp:
                i, _ = bigger.probe(fp)
                bigger.keys[i] = fp
                bigger.values[i] = value
        bigger.count = self.count
        return bigger


class FingerprintMap:
    """`typecode`: the values' array type: "I" for row numbers (4 bytes), "q"
    for byte offsets in a report that may pass 4 GiB."""

    def __init__(self, capacity: int = 1024, typecode: str = "q") -> None:
        self._typecode = typecode
        per_shard = max(16, capacity // SHARDS)
        self._shards = [_Shard(per_shard, typecode) for _ in range(SHARDS)]

    def __len__(self) -> int:
        return sum(shard.count for shard in self._shards)

    def get(self, key: str) -> int | None:
        """The value stored for `key`, or None."""
        fp = hash(key) or 1
        shard = self._shards[(fp >> _SHARD_SHIFT) % SHARDS]
        i, found = shard.probe(fp)
        return shard.values[i] if found else None

    def setdefault(self, key: str, value: int) -> int | None:
        """The value stored for `key` if there is one; else store `value`, return None."""
        fp = hash(key) or 1
        n = (fp >> _SHARD_SHIFT) % SHARDS
        shard = self._shards[n]
        i, found = shard.probe(fp)
        if found:
            return shard.values[i]
        shard.keys[i] = fp
        shard.values[i] = value
        shard.count += 1
        if shard.full():
            self._shards[n] = shard.grown(self._typecode)
        return None
