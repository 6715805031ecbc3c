"""The sources and sinks behind :class:`offline_learner.dataset.Dataset`: Parquet
directories, the embedded event log, Kafka, DSJson files and flat tables."""
