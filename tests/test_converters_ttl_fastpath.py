"""The TTL converter's fast paths (dataset_converters/ttl.py) against its reference parser: the canonical text of
a line names exactly the ids ``parse_ids`` finds, and the numpy distinct-id count equals a set's."""

from __future__ import annotations

import random

import pytest

from dataset_converters.ttl import _Bad, _DistinctIds, parse_canonical, parse_ids, sequence_key

LINES = [b"0,0,0,105,3,77", b"105,3", b"7", b"0,0,5,0,3", b"0,007,3", b"5,3,0", b"00,5", b"5,00003",
         b"1" + b"2" * 99 + b",4", b"0," + b"9" * 100, b"0," + b"0" * 150 + b"8,1", b"3,0,0,0"]
BAD = [b"", b"0,0", b"1,,2", b",1", b"1,", b"1,a", b"1, 2", b"1" * 101, b"0,1" + b"0" * 100, b"\xff"]


@pytest.mark.parametrize("line", LINES)
def test_canonical_text_is_the_ids_parse_ids_finds(line):
    ints, zeros = parse_ids(line)
    canonical, n, z = parse_canonical(line)
    assert canonical == ",".join(map(str, ints)).encode() and n == len(ints) and z == zeros


@pytest.mark.parametrize("line", BAD)
def test_bad_lines_fail_alike(line):
    with pytest.raises(_Bad) as ref:
        parse_ids(line)
    with pytest.raises(_Bad) as fast:
        parse_canonical(line)
    assert (fast.value.kind, fast.value.problem) == (ref.value.kind, ref.value.problem)


def test_the_key_identifies_the_ids_whatever_the_padding_and_leading_zeros():
    assert sequence_key(parse_canonical(b"0,0,12,5")[0]) == sequence_key(parse_canonical(b"012,0005")[0])
    assert sequence_key(parse_canonical(b"12,5")[0]) != sequence_key(parse_canonical(b"1,25")[0])


def test_distinct_count_equals_a_sets():
    rng = random.Random(0)
    counter, reference = _DistinctIds(), set()
    counter._BATCH = 1000  # many batches
    for _ in range(3000):
        ids = [rng.choice([rng.randint(1, 999), rng.randint(1, 10**9 - 1), rng.randint(1, 10**30),
                           (1 << 27) + rng.randint(0, 5)]) for _ in range(rng.randint(1, 12))]
        counter.add(",".join(map(str, ids)).encode())
        reference.update(ids)
    assert counter.count() == len(reference)
