"""The ClickHouse side: spans from Kafka into ClickHouse tables, and the reads on top of them.

clickhouse.py (connect, migrate, batching sink), rows.py (span -> row mapping),
consumer.py (the Kafka loop: commit after write), query_server.py and analytics.py (read-only
SQL, reports, trace trees, in embedded chDB mode as well as against a server).
"""
