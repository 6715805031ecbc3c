"""The Kafka side of the distributed mode.

- :mod:`learnloop.kafka.topics` — topic names, partition keys (the routing rule) and
  idempotent topic creation (``python -m learnloop.kafka.topics`` creates them);
- :mod:`learnloop.kafka.codec` — events as JSON record values, trace context as headers;
- :mod:`learnloop.kafka.sink` — :class:`~learnloop.kafka.sink.KafkaEventSink`, the
  decision service's durable, idempotent appends;
- :mod:`learnloop.kafka.connect` — start clients with bounded time-outs and clear errors.

This package does not import its modules eagerly, so ``python -m
learnloop.kafka.topics`` runs cleanly and importing one piece does not pull in the
others. See ``docs/distributed.md`` for the design.
"""
