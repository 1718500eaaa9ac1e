"""The Kafka edge of pledgewatch: faust app, topics, producers, Prometheus adapter.

Only this package imports Kafka clients and ``prometheus_client``; it moves bytes
between Kafka and the core in ``monitor/`` and ``rules/``.
"""
