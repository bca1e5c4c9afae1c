"""A compact map from URL fingerprints to the first row that named them.

Deduplication must remember every URL of the list, so it is the one thing in a
run that grows with the list. A dict of strings costs about 150 bytes a URL; this
open-addressing table of 64-bit fingerprints costs 16 bytes a slot, kept at
most half full: about 24 to 48 bytes a URL.

The fingerprint is Python's own string hash (SipHash, 64 bits, salted per
process: stable within a run, which is all dedup needs). Two different URLs with
the same fingerprint would be taken for duplicates; at a million URLs the odds
are about 3 in 100 million.
"""

from __future__ import annotations

from array import array


class FingerprintMap:
    def __init__(self, capacity: int = 1024) -> None:
        if capacity & (capacity - 1):
            raise ValueError("capacity must be a power of two")
        self._keys = array("q", bytes(8 * capacity))  # 0 marks an empty slot
        self._values = array("q", bytes(8 * capacity))
        self._mask = capacity - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def get(self, key: str) -> int | None:
        """The value stored for `key`, or None."""
        i, found = self._probe(hash(key) or 1)
        return self._values[i] if found else None

    def setdefault(self, key: str, value: int) -> int | None:
        """The value stored for `key` if there is one; else store `value`, return None."""
        fp = hash(key) or 1
        i, found = self._probe(fp)
        if found:
            return self._values[i]
        self._keys[i] = fp
        self._values[i] = value
        self._count += 1
        if self._count * 2 > self._mask:
            self._grow()
        return None

    def _probe(self, fp: int) -> tuple[int, bool]:
        """The slot holding `fp`, or the empty slot where it would go (linear probing)."""
        keys, mask = self._keys, self._mask
        i = fp & mask
        while True:
            slot = keys[i]
            if slot == fp or slot == 0:
                return i, slot == fp
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = zip(self._keys, self._values, strict=True)
        capacity = (self._mask + 1) * 2
        self._keys = array("q", bytes(8 * capacity))
        self._values = array("q", bytes(8 * capacity))
        self._mask = capacity - 1
        keys, values, mask = self._keys, self._values, self._mask
        for fp, value in old:
            if fp:
                i = fp & mask
                while keys[i]:
                    i = (i + 1) & mask
                keys[i] = fp
                values[i] = value
