"""A batch of unique-key appends (one multi-row INSERT) answers as one-by-one appends do."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from learnloop.eventlog.base import Append, AppendResult
from learnloop.eventlog.sqlite import SqliteEventLog

# Each case: keys appended before, then the keys of one batch ("v" marks which write).
CASES = {
    "all-new": ([], ["a", "b", "c"]),
    "one-already-stored": (["b"], ["a", "b", "c"]),
    "repeated-in-the-batch": ([], ["a", "b", "a", "a"]),
    "stored-and-repeated": (["a"], ["a", "b", "a"]),
    "every-key-stored": (["a", "b"], ["b", "a"]),
}


def _append(key: str, tag: str) -> Append:
    return Append(stream="decisions", value=f"{key}:{tag}".encode(), key=key, unique_key=key)


async def _run(
    directory: Path, before: list[str], batch: list[str], at_once: bool
) -> list[tuple[int, bytes, bool]]:
    log = SqliteEventLog(directory)
    try:
        for key in before:
            await log.append([_append(key, "before")])
        records = [_append(key, f"batch{i}") for i, key in enumerate(batch)]
        results: list[AppendResult]
        if at_once:
            results = await log.append(records)
        else:
            results = [(await log.append([r]))[0] for r in records]
        stored = await log.read(["decisions"], -1)
        assert len(stored) == len(set(before) | set(batch))
        return [(r.offset, r.value, r.existed) for r in results]
    finally:
        await log.close()


@pytest.mark.parametrize("case", list(CASES))
def test_batch_results_equal_one_by_one_results(case: str, tmp_path: Path) -> None:
    before, batch = CASES[case]
    together = asyncio.run(_run(tmp_path / "batch", before, batch, at_once=True))
    apart = asyncio.run(_run(tmp_path / "single", before, batch, at_once=False))
    assert together == apart
