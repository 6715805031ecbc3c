"""The same behaviour tests over every EventLog backend (memory and SQLite), plus
what only the durable backend promises: reopen, close semantics, writer failures."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from learnloop.errors import InvalidInput, Unavailable
from learnloop.eventlog import Append, EventLog, MemoryEventLog, SqliteEventLog
from learnloop.eventlog.sqlite import FILE_NAME


@pytest.fixture(params=["memory", "sqlite"])
async def log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventLog]:
    backend: EventLog = (
        MemoryEventLog() if request.param == "memory" else SqliteEventLog(tmp_path / "data")
    )
    yield backend
    await backend.close()


def rec(stream: str, value: str, *, key: str | None = None, unique: str | None = None) -> Append:
    return Append(stream=stream, value=value.encode(), key=key, unique_key=unique)


async def test_empty_log(log: EventLog) -> None:
    assert await log.end_offset() == -1
    assert await log.read(["a"], after=-1) == []
    assert await log.find("a", "nope") is None
    assert await log.load_state("nothing") is None
    assert await log.append([]) == []


async def test_append_then_read_in_order(log: EventLog) -> None:
    results = await log.append([rec("a", "1", key="k1"), rec("a", "2"), rec("a", "3", key="k3")])
    offsets = [r.offset for r in results]
    assert offsets == sorted(offsets) and len(set(offsets)) == 3
    assert [r.existed for r in results] == [False, False, False]
    assert [r.value for r in results] == [b"1", b"2", b"3"]
    records = await log.read(["a"], after=-1)
    assert [(r.offset, r.stream, r.key, r.value) for r in records] == [
        (offsets[0], "a", "k1", b"1"),
        (offsets[1], "a", None, b"2"),
        (offsets[2], "a", "k3", b"3"),
    ]
    assert await log.end_offset() == offsets[-1]


async def test_offsets_are_global_across_streams(log: EventLog) -> None:
    first = await log.append([rec("a", "a1"), rec("b", "b1")])
    second = await log.append([rec("a", "a2")])
    offsets = [r.offset for r in first + second]
    assert offsets == sorted(offsets) and len(set(offsets)) == 3
    both = await log.read(["a", "b"], after=-1)
    assert [r.value for r in both] == [b"a1", b"b1", b"a2"]


async def test_read_filters_streams(log: EventLog) -> None:
    await log.append([rec("a", "a1"), rec("b", "b1"), rec("c", "c1"), rec("a", "a2")])
    assert [r.value for r in await log.read(["a"], after=-1)] == [b"a1", b"a2"]
    assert [r.value for r in await log.read(["c", "b"], after=-1)] == [b"b1", b"c1"]
    assert await log.read(["missing"], after=-1) == []


async def test_read_after_offset_and_limit(log: EventLog) -> None:
    results = await log.append([rec("a", str(i)) for i in range(10)])
    offsets = [r.offset for r in results]
    after = await log.read(["a"], after=offsets[4])
    assert [r.value for r in after] == [str(i).encode() for i in range(5, 10)]
    limited = await log.read(["a"], after=-1, limit=3)
    assert [r.value for r in limited] == [b"0", b"1", b"2"]
    # Paging with the last offset seen walks the whole stream exactly once.
    seen: list[bytes] = []
    cursor = -1
    while page := await log.read(["a"], after=cursor, limit=4):
        seen.extend(r.value for r in page)
        cursor = page[-1].offset
    assert seen == [str(i).encode() for i in range(10)]
    assert await log.read(["a"], after=offsets[-1]) == []


async def test_unique_key_dedupes_across_calls(log: EventLog) -> None:
    [first] = await log.append([rec("d", "original", unique="e1")])
    [again] = await log.append([rec("d", "changed", unique="e1")])
    assert again.existed and again.offset == first.offset and again.value == b"original"
    assert [r.value for r in await log.read(["d"], after=-1)] == [b"original"]
    found = await log.find("d", "e1")
    assert found is not None and found.offset == first.offset and found.value == b"original"


async def test_unique_key_dedupes_within_one_batch(log: EventLog) -> None:
    results = await log.append([rec("d", "x", unique="e1"), rec("d", "y", unique="e1")])
    assert [r.existed for r in results] == [False, True]
    assert results[0].offset == results[1].offset and results[1].value == b"x"
    assert len(await log.read(["d"], after=-1)) == 1


async def test_unique_key_is_scoped_to_its_stream(log: EventLog) -> None:
    results = await log.append([rec("d", "x", unique="k"), rec("o", "y", unique="k")])
    assert not any(r.existed for r in results)
    assert results[0].offset != results[1].offset
    found = await log.find("o", "k")
    assert found is not None and found.value == b"y"


async def test_commit_writes_records_and_state(log: EventLog) -> None:
    await log.append([rec("d", "decision")])
    offsets = await log.commit(
        [rec("joined", "j1", unique="e1"), rec("joined", "j2", unique="e2")],
        {"join.offset": b"7", "join.snapshot": b"{}"},
    )
    assert len(offsets) == 2 and offsets[0] < offsets[1]
    assert await log.load_state("join.offset") == b"7"
    assert await log.load_state("join.snapshot") == b"{}"
    assert [r.value for r in await log.read(["joined"], after=-1)] == [b"j1", b"j2"]
    assert await log.end_offset() == offsets[1]
    # A replayed commit re-uses the stored records and overwrites the state.
    again = await log.commit([rec("joined", "j1-replayed", unique="e1")], {"join.offset": b"9"})
    assert again == offsets[:1]
    assert await log.load_state("join.offset") == b"9"
    assert await log.load_state("join.snapshot") == b"{}"


async def test_commit_without_records_sets_state(log: EventLog) -> None:
    assert await log.commit([], {"s": b"1"}) == []
    assert await log.load_state("s") == b"1"
    assert await log.end_offset() == -1


async def test_many_concurrent_appenders_get_distinct_offsets(log: EventLog) -> None:
    async def one(i: int) -> int:
        [result] = await log.append([rec("c", str(i), unique=f"u{i}")])
        return result.offset

    offsets = await asyncio.gather(*(one(i) for i in range(200)))
    assert len(set(offsets)) == 200
    records = await log.read(["c"], after=-1, limit=1000)
    assert sorted(r.offset for r in records) == sorted(offsets)
    assert {r.value for r in records} == {str(i).encode() for i in range(200)}
    assert await log.end_offset() == max(offsets)


# --- what only the durable backend promises ------------------------------------------


async def test_sqlite_reopen_sees_everything(tmp_path: Path) -> None:
    first = SqliteEventLog.open(tmp_path)
    written = await first.append([rec("d", "1", key="k", unique="e1"), rec("o", "2")])
    await first.commit([rec("joined", "j", unique="e1")], {"join.offset": b"2"})
    end = await first.end_offset()
    await first.close()

    second = SqliteEventLog.open(tmp_path)
    try:
        records = await second.read(["d", "o", "joined"], after=-1)
        assert [(r.stream, r.key, r.value) for r in records] == [
            ("d", "k", b"1"),
            ("o", None, b"2"),
            ("joined", None, b"j"),
        ]
        assert await second.end_offset() == end
        assert await second.load_state("join.offset") == b"2"
        [dup] = await second.append([rec("d", "other", unique="e1")])
        assert dup.existed and dup.offset == written[0].offset
        [new] = await second.append([rec("d", "3")])
        assert new.offset > end
    finally:
        await second.close()


async def test_sqlite_file_is_wal(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "nested" / "dir")
    await log.close()
    conn = sqlite3.connect(tmp_path / "nested" / "dir" / FILE_NAME)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(events)")}
        assert {"events_stream_offset", "events_stream_unique_key"} <= indexes
    finally:
        conn.close()


async def test_sqlite_group_commit_batches_concurrent_appenders(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path, batch_max=16)
    try:
        await asyncio.gather(*(log.append([rec("c", str(i))]) for i in range(200)))
        # Everything queued while the writer was busy shares a transaction, at most 16 each.
        assert 200 // 16 <= log.transactions < 200
    finally:
        await log.close()


async def test_sqlite_close_drains_pending_writes_then_refuses(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path)
    pending = [asyncio.ensure_future(log.append([rec("c", str(i))])) for i in range(50)]
    await asyncio.sleep(0)  # let every task enqueue its request
    await log.close()
    results = await asyncio.gather(*pending)
    assert len({r[0].offset for r in results}) == 50
    with pytest.raises(Unavailable, match="closed"):
        await log.append([rec("c", "late")])
    with pytest.raises(Unavailable, match="closed"):
        await log.read(["c"], after=-1)
    await log.close()  # idempotent

    reopened = SqliteEventLog(tmp_path)
    try:
        assert len(await reopened.read(["c"], after=-1)) == 50
    finally:
        await reopened.close()


async def test_sqlite_writer_failure_fails_the_batch_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = SqliteEventLog(tmp_path)
    try:
        await log.append([rec("c", "before")])
        writer = log._writer
        original = writer._apply

        def disk_full(request: object) -> object:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(writer, "_apply", disk_full)
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(log.append([rec("c", str(i))]) for i in range(5)), return_exceptions=True
            ),
            timeout=5,
        )
        assert all(isinstance(o, Unavailable) and "disk" in str(o) for o in outcomes)
        monkeypatch.setattr(writer, "_apply", original)
        await log.append([rec("c", "after")])
        assert [r.value for r in await log.read(["c"], after=-1)] == [b"before", b"after"]
    finally:
        await log.close()


async def test_sqlite_database_full_fails_the_batch_and_recovers(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path)
    try:
        await log.append([rec("c", "before")])
        # A real SQLITE_FULL: cap the file at its current size (safe here, no write in flight).
        conn = log._writer._conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        big = Append(stream="c", value=b"x" * 200_000)
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                log.append([big]), log.commit([big], {"s": b"1"}), return_exceptions=True
            ),
            timeout=5,
        )
        assert all(isinstance(o, Unavailable) and "full" in str(o) for o in outcomes)
        assert await log.load_state("s") is None
        conn.execute("PRAGMA max_page_count = 1073741823")
        await log.append([big])
        assert [len(r.value) for r in await log.read(["c"], after=-1)] == [6, 200_000]
    finally:
        await log.close()


async def test_sqlite_rejects_non_bytes_values(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path)
    try:
        with pytest.raises(InvalidInput, match="bytes"):
            await log.append([Append(stream="c", value="text")])  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="bytes"):
            await log.commit([], {"s": "text"})  # type: ignore[dict-item]
        assert await log.end_offset() == -1
    finally:
        await log.close()


async def test_sqlite_bad_request_fails_alone(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path)
    try:
        bad = Append(stream=None, value=b"x")  # type: ignore[arg-type]
        outcomes = await asyncio.gather(
            log.append([rec("c", "ok1")]),
            log.append([bad]),
            log.append([rec("c", "ok2")]),
            return_exceptions=True,
        )
        assert isinstance(outcomes[1], InvalidInput)
        assert [r.value for r in await log.read(["c"], after=-1)] == [b"ok1", b"ok2"]
    finally:
        await log.close()


def test_sqlite_refuses_unusable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(Unavailable, match="cannot open event log"):
        SqliteEventLog(blocker)


async def test_sqlite_two_writers_on_one_file_share_it_like_two_processes(tmp_path: Path) -> None:
    """Two logs on one file have two writer connections, as two API worker processes do:
    every append lands once, offsets stay distinct, and a unique key sent to both at
    once is stored once and answered with the stored value by both."""
    first, second = SqliteEventLog(tmp_path), SqliteEventLog(tmp_path)
    try:

        async def burst(log: SqliteEventLog, tag: str) -> list[int]:
            results = await asyncio.gather(
                *(log.append([Append("decisions", f"{tag}{i}".encode())]) for i in range(300))
            )
            return [r[0].offset for r in results]

        offsets = [
            o
            for batch in await asyncio.gather(burst(first, "a"), burst(second, "b"))
            for o in batch
        ]
        assert len(set(offsets)) == 600
        same = [Append("decisions", tag.encode(), unique_key="shared") for tag in ("a", "b")]
        [a], [b] = await asyncio.gather(first.append(same[:1]), second.append(same[1:]))
        assert a.value == b.value and a.offset == b.offset and a.existed != b.existed
        assert len(await first.read(["decisions"], -1, 10_000)) == 601
    finally:
        await first.close()
        await second.close()


async def test_sqlite_without_checkpoints_leaves_the_wal_to_another_writer(
    tmp_path: Path,
) -> None:
    """An API worker's log (``checkpoints=False``) never copies the WAL into the database
    file; the loop process's log does so on its next commit."""
    api = SqliteEventLog(tmp_path, checkpoints=False)
    loop = SqliteEventLog(tmp_path)
    try:
        for _ in range(20):  # ~2,500 pages of WAL, past the 1,000-page threshold
            await api.append([Append("decisions", bytes(4000)) for _ in range(128)])
        assert api.path.stat().st_size < 100_000, "the API's commits checkpointed"
        await loop.append([Append("joined", b"x")])
        assert api.path.stat().st_size > 5_000_000, "the loop's commit did not checkpoint"
        assert len(await loop.read(["decisions"], -1, 10_000)) == 20 * 128
    finally:
        await api.close()
        await loop.close()
