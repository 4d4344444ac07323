"""Prometheus metrics and structured (JSON) logs carrying the request id.

Each service instance owns its own ``CollectorRegistry``, so several apps in one process
(tests) never share counters; ``/metrics`` exposes that registry.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pythonjsonlogger.json import JsonFormatter

# The id of the request being served, for log records (set by the request-id middleware).
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


class Metrics:
    """The service's metrics; ``render()`` gives the Prometheus text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "photoremix_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "photoremix_http_request_duration_seconds",
            "Time from request start to the end of the response, by route template.",
            ["route", "method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 600),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "photoremix_queue_depth",
            "Remixes waiting for a free worker.",
            registry=self.registry,
        )
        self.running = Gauge(
            "photoremix_remixes_running",
            "Remixes running on a worker right now.",
            registry=self.registry,
        )
        self.engine_seconds = Counter(
            "photoremix_engine_seconds",
            "Seconds spent inside engines, by engine.",
            ["engine"],
            registry=self.registry,
        )
        self.outputs_billed = Counter(
            "photoremix_outputs_billed",
            "Output images charged, by price (plain, or with a recognised profile).",
            ["price"],
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "photoremix_jobs_finished",
            "Remix jobs finished, by outcome (succeeded, or the failure code).",
            ["outcome"],
            registry=self.registry,
        )

    def track_pool(self, queue_depth: Callable[[], int], running: Callable[[], int]) -> None:
        """Read the pool's gauges when scraped rather than updating them on every change."""
        self.queue_depth.set_function(lambda: float(queue_depth()))
        self.running.set_function(lambda: float(running()))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr: time, level, logger, message, request_id and any extras."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}{request_id}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own access log duplicates ours (which carries the request id).
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
