"""Kafka and Faust plumbing: the app, topic names and declarations, partitioning, reading a
topic range, the stage envelope (decode, dead-letter, commit guard), worker subprocesses and
their heap (`heap`)."""
