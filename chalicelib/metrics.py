"""CloudWatch metrics as Embedded Metric Format log lines (Powertools' Metrics writes them), one
flush per handler run: no API calls, no extra latency, nothing to grant."""

from __future__ import annotations

import threading

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

NAMESPACE = "Trickle"


class RunMetrics:
    """The figures of one handler run; thread-safe so parallel deliveries can share it."""

    def __init__(self, dimensions: dict[str, str]) -> None:
        # EphemeralMetrics: Powertools' `Metrics` shares its values and dimensions across instances,
        # which mixes the ingest's and the drain's figures whenever both run in one process.
        self._metrics = EphemeralMetrics(namespace=NAMESPACE, service="trickle")
        for name, value in dimensions.items():  # set now: Powertools flushes by itself at 100 values
            self._metrics.add_dimension(name=name, value=value)
        self._lock = threading.Lock()
        self._recorded = False

    def count(self, name: str, value: int = 1) -> None:
        if value:
            self._add(name, MetricUnit.Count, value)

    def milliseconds(self, name: str, value: float) -> None:
        self._add(name, MetricUnit.Milliseconds, value)

    def seconds(self, name: str, value: float) -> None:
        self._add(name, MetricUnit.Seconds, value)

    def _add(self, name: str, unit: MetricUnit, value: float) -> None:
        with self._lock:
            self._metrics.add_metric(name=name, unit=unit, value=value)
            self._recorded = True

    def flush(self) -> None:
        """Print the EMF line (stdout, as Lambda's log agent expects); nothing if nothing was recorded."""
        with self._lock:
            if not self._recorded:
                return
            self._metrics.flush_metrics()
            self._recorded = False
