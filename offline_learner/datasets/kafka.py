"""Joined examples from the Kafka ``joined`` topic, read from the beginning to the end
offsets found when the pass starts.

No consumer group and nothing committed: reading a dataset never moves a learner's
offsets. The topic is read partition by partition (a partition is in event order,
``joined`` is keyed by decision point, so one partition holds whole decision points).

The caller gets a plain synchronous iterator: aiokafka runs on its own event loop in a
worker thread that hands pages of examples over a small bounded queue, so memory stays
bounded and a notebook (which already runs an event loop) can iterate it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Iterator

from learnloop.errors import InvalidInput, LearnloopError, Unavailable
from learnloop.streams import Streams, decode_event
from schemas.events import JoinedExample

PAGES_AHEAD = 4
_DONE = object()


def read_topic(
    bootstrap: str, topic: str, *, timeout_seconds: float = 30.0
) -> Iterator[JoinedExample]:
    """Stream the joined examples of ``topic`` up to its end offsets at the start.

    Raises :class:`Unavailable` if the broker cannot be reached or a partition makes no
    progress within ``timeout_seconds``, :class:`InvalidInput` if the topic is missing.
    """
    pages: queue.Queue[object] = queue.Queue(maxsize=PAGES_AHEAD)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                pages.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            asyncio.run(_pump(bootstrap, topic, timeout_seconds, put, stop))
        except BaseException as exc:  # handed to the reading thread, raised there
            put(exc)
        else:
            put(_DONE)

    worker = threading.Thread(target=run, name=f"dataset-kafka-{topic}", daemon=True)
    worker.start()
    try:
        while True:
            item = pages.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, list)
            yield from item
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                pages.get_nowait()
        worker.join(timeout=timeout_seconds)


async def _pump(
    bootstrap: str,
    topic: str,
    timeout_seconds: float,
    put: Callable[[object], bool],
    stop: threading.Event,
) -> None:
    from aiokafka import TopicPartition

    from learnloop.kafka.connect import start_consumer

    consumer = await start_consumer(
        bootstrap,
        timeout_seconds=timeout_seconds,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        await consumer.topics()  # fresh metadata
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            raise InvalidInput(
                f"no topic {topic!r} on Kafka at {bootstrap}: the joined topic is "
                "<topic_prefix>joined (learnloop.joined by default)"
            )
        partitions = [TopicPartition(topic, number) for number in sorted(numbers)]
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            end = int(ends[tp])
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_seconds
            while not stop.is_set() and await consumer.position(tp) < end:
                records = (await consumer.getmany(tp, timeout_ms=200)).get(tp, [])
                if not records:
                    if loop.time() > deadline:
                        raise Unavailable(
                            f"no progress reading {topic}[{tp.partition}] to offset {end} "
                            f"within {timeout_seconds:g} s: is the broker healthy?"
                        )
                    continue
                deadline = loop.time() + timeout_seconds
                page = []
                for record in records:
                    if record.offset >= end:
                        break
                    example = _decode(topic, tp.partition, record.offset, record.value)
                    page.append(example)
                if page and not await asyncio.to_thread(put, page):
                    return
    finally:
        await consumer.stop()


def _decode(topic: str, partition: int, offset: int, value: bytes | None) -> JoinedExample:
    try:
        event = decode_event(Streams.JOINED, value or b"")
    except LearnloopError as exc:
        raise InvalidInput(f"{topic}[{partition}] offset {offset}: {exc}") from exc
    if not isinstance(event, JoinedExample):
        raise InvalidInput(f"{topic}[{partition}] offset {offset} is not a joined example")
    return event
