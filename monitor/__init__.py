"""pledgewatch core: schemas, windows, data quality, valuation, loan state.

Nothing in this package imports a Kafka client: ``streams/`` moves bytes
between Kafka and this core, and ``pledgewatch backtest`` runs the same core
in-process.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
