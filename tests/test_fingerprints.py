"""The compact dedup map agrees with a dict, through every shard's growth."""

from __future__ import annotations

import pytest

from checker.fingerprints import SHARDS, FingerprintMap


@pytest.mark.parametrize("typecode", ["I", "q"])
def test_agrees_with_a_dict(typecode: str) -> None:
    fm = FingerprintMap(typecode=typecode)
    ref: dict[str, int] = {}
    for i in range(50_000):
        key = f"https://h{i % 20_000}.example/{i % 7}"
        want = ref.setdefault(key, i)
        got = fm.setdefault(key, i)
        assert got == (None if want == i else want)
    assert len(fm) == len(ref)
    for key, value in ref.items():
        assert fm.get(key) == value
    assert fm.get("https://not.there/") is None


def test_large_offsets_fit_the_q_typecode() -> None:
    fm = FingerprintMap()
    fm.setdefault("a", 5 << 32)
    assert fm.get("a") == 5 << 32
    small = FingerprintMap(typecode="I")
    with pytest.raises(OverflowError):
        small.setdefault("a", 5 << 32)


def test_shards_grow_one_at_a_time() -> None:
    fm = FingerprintMap(capacity=SHARDS * 16)
    for i in range(5_000):
        fm.setdefault(f"k{i}", i)
    assert all(0.4 < s.count / s.size <= 0.75 for s in fm._shards)
    assert max(s.size for s in fm._shards) <= 256  # 5,000 keys over 64 shards
