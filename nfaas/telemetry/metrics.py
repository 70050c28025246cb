"""Serverless metrics per function version (EVE025 7.2.5; gap #5.2).

Invocations, errors, duration (without cold start), cold starts and their
init time, queue wait, queue overloads and instances by state: as Prometheus text at
``/metrics`` and as JSON for the API and CLI. Names and labels are stable and
documented in ``docs/metrics.md``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

VersionKey = tuple[str, str, str]

#: outcome label values; "ok" and the error kinds a user can act on
OUTCOMES = (
    "ok", "raised", "crashed", "timeout", "oom", "overloaded", "start_failed", "no_capacity",
    "too_large", "error",
)  # fmt: skip

_DURATION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
)  # fmt: skip


@dataclass
class VersionStats:
    """The JSON view of one function version's behaviour since the platform started."""

    invocations: int = 0
    errors: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    cold_starts: int = 0
    init_seconds_total: float = 0.0
    duration_seconds_total: float = 0.0
    recent_durations: deque[float] = field(default_factory=lambda: deque(maxlen=2048))
    last_invoked_at: float | None = None
    instances_created: int = 0
    instance_init_seconds_total: float = 0.0
    queue_waits: int = 0
    queue_wait_seconds_total: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        durations = sorted(self.recent_durations)
        ok = self.invocations - self.errors

        def pct(p: float) -> float | None:
            if not durations:
                return None
            return round(durations[min(len(durations) - 1, int(p * len(durations)))] * 1000, 3)

        return {
            "invocations": self.invocations,
            "errors": self.errors,
            "outcomes": dict(self.outcomes),
            "cold_starts": self.cold_starts,
            "init_ms_mean": round(self.init_seconds_total / self.cold_starts * 1000, 3)
            if self.cold_starts
            else None,
            "duration_ms_mean": round(self.duration_seconds_total / ok * 1000, 3)
            if ok > 0
            else None,
            "duration_ms_p50": pct(0.50),
            "duration_ms_p99": pct(0.99),
            "instances_created": self.instances_created,
            "instance_init_ms_mean": round(
                self.instance_init_seconds_total / self.instances_created * 1000, 3
            )
            if self.instances_created
            else None,
            "queue_wait_ms_mean": round(self.queue_wait_seconds_total / self.queue_waits * 1000, 3)
            if self.queue_waits
            else None,
            "last_invoked_at": self.last_invoked_at,
        }


class _InstanceCollector:
    """Instances by state, read at scrape time from function management."""

    def __init__(self, source: Callable[[], Iterable[tuple[VersionKey, str, str, int]]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "nfaas_instances",
            "Function instances by state and backend",
            labels=["app", "function", "version", "backend", "state"],
        )
        for (app, name, version), backend, state, count in self._source():
            family.add_metric([app, name, version, backend, state], count)
        yield family


#: (version, policy, mode, pre-warm s, keep-alive s, instances held ready)
KeepAliveGauge = tuple[VersionKey, str, str, float, float, int]


class _KeepAliveCollector:
    """Each version's current keep-alive decision, read at scrape time."""

    def __init__(self, source: Callable[[], Iterable[KeepAliveGauge]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        labels = ["app", "function", "version", "policy", "mode"]
        prewarm = GaugeMetricFamily(
            "nfaas_keepalive_prewarm_seconds",
            "Keep-alive policy: time after the last event before an instance is loaded again",
            labels=labels,
        )
        keep = GaugeMetricFamily(
            "nfaas_keepalive_window_seconds",
            "Keep-alive policy: time an instance then stays loaded without an event",
            labels=labels,
        )
        ready = GaugeMetricFamily(
            "nfaas_keepalive_ready_instances",
            "Keep-alive policy: instances held ready in the window",
            labels=labels,
        )
        for (app, name, version), policy, mode, pre, window, held in self._source():
            values = [app, name, version, policy, mode]
            prewarm.add_metric(values, pre)
            keep.add_metric(values, window)
            ready.add_metric(values, held)
        yield from (prewarm, keep, ready)


class Telemetry:
    """Records every invocation outcome; nothing is dropped without being counted."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["app", "function", "version"]
        self._invocations = Counter(
            "nfaas_invocations",
            "Invocations by trigger and outcome",
            [*labels, "trigger", "outcome"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "nfaas_invocation_duration_seconds",
            "Time the function spent on an event, cold start excluded",
            labels,
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._cold_starts = Counter(
            "nfaas_cold_starts", "Events that waited for an instance to be created", labels,
            registry=self.registry,
        )  # fmt: skip
        self._init = Histogram(
            "nfaas_cold_start_seconds",
            "Cold start time: event arrival to the function's first line",
            labels,
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._instance_init = Histogram(
            "nfaas_instance_init_seconds",
            "Time to create an instance: sandbox taken or prepared, code loaded",
            [*labels, "backend", "from_pool"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._dropped = Counter(
            "nfaas_trigger_dropped",
            "Events a trigger could not deliver (no function, too large, overloaded)",
            ["trigger", "reason"],
            registry=self.registry,
        )
        self._keepalive_actions = Counter(
            "nfaas_keepalive_actions",
            "Instances a keep-alive policy pre-warmed or unloaded",
            [*labels, "action"],
            registry=self.registry,
        )
        self._queue_wait = Histogram(
            "nfaas_queue_wait_seconds",
            "Time an event waited for a slot on a running instance (a cold start is not a wait)",
            labels,
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._stats: dict[VersionKey, VersionStats] = {}
        #: called with (version, outcome, duration) on every invocation (canary windows)
        self._observers: list[Callable[[VersionKey, str, float | None], None]] = []
        # Labelled children are looked up once: prometheus_client's labels() takes a
        # lock and builds a tuple on every call, a fifth of an event's own cost here.
        self._children: dict[tuple[VersionKey, str, str], Any] = {}
        self._durations: dict[VersionKey, Any] = {}
        self._waits: dict[VersionKey, Any] = {}

    def watch_instances(
        self, source: Callable[[], Iterable[tuple[VersionKey, str, str, int]]]
    ) -> None:
        self.registry.register(_InstanceCollector(source))

    def observe(self, observer: Callable[[VersionKey, str, float | None], None]) -> None:
        """Be told of every invocation's version, outcome and duration, as recorded."""
        self._observers.append(observer)

    def watch_keepalive(self, source: Callable[[], Iterable[KeepAliveGauge]]) -> None:
        self.registry.register(_KeepAliveCollector(source))

    def keepalive_action(self, key: VersionKey, action: str) -> None:
        """An instance pre-warmed (``prewarm``) or unloaded (``unload``) by a policy."""
        self._keepalive_actions.labels(*key, action).inc()

    def has_stats(self, key: VersionKey) -> bool:
        return key in self._stats

    def stats(self, key: VersionKey) -> VersionStats:
        stats = self._stats.get(key)
        if stats is None:
            stats = self._stats[key] = VersionStats()
        return stats

    def record(
        self,
        key: VersionKey,
        trigger: str,
        outcome: str,
        *,
        duration: float | None = None,
        cold_start: float | None = None,
        queue_wait: float | None = None,
    ) -> None:
        """One invocation: its outcome, the function's duration, and the cold start if it had
        one, else the time it waited for a slot (``queue_wait``)."""
        stats = self._stats.get(key) or self.stats(key)
        for observer in self._observers:
            observer(key, outcome, duration)
        if queue_wait is not None:
            stats.queue_waits += 1
            stats.queue_wait_seconds_total += queue_wait
            waits = self._waits.get(key)
            if waits is None:
                waits = self._waits[key] = self._queue_wait.labels(*key)
            waits.observe(queue_wait)
        stats.invocations += 1
        stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + 1
        stats.last_invoked_at = time.time()
        if outcome != "ok":
            stats.errors += 1
        child = self._children.get((key, trigger, outcome))
        if child is None:
            child = self._children[(key, trigger, outcome)] = self._invocations.labels(
                *key, trigger, outcome
            )
        child.inc()
        if duration is not None:
            if outcome == "ok":
                stats.duration_seconds_total += duration
                stats.recent_durations.append(duration)
            histogram = self._durations.get(key)
            if histogram is None:
                histogram = self._durations[key] = self._duration.labels(*key)
            histogram.observe(duration)
        if cold_start is not None:
            stats.cold_starts += 1
            stats.init_seconds_total += cold_start
            self._cold_starts.labels(*key).inc()
            self._init.labels(*key).observe(cold_start)

    def instance_created(
        self, key: VersionKey, backend: str, init_seconds: float, from_pool: bool
    ) -> None:
        stats = self.stats(key)
        stats.instances_created += 1
        stats.instance_init_seconds_total += init_seconds
        self._instance_init.labels(*key, backend, "true" if from_pool else "false").observe(
            init_seconds
        )

    def duration_histograms(self) -> Iterable[Metric]:
        """The duration histogram, per version (the dashboard draws it over time)."""
        return self._duration.collect()

    def dropped(self, trigger: str, reason: str) -> None:
        self._dropped.labels(trigger, reason).inc()

    def dropped_counts(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for metric in self._dropped.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    out[f"{sample.labels['trigger']}:{sample.labels['reason']}"] = sample.value
        return out

    def as_json(self) -> dict[str, dict[str, Any]]:
        return {
            "/".join(key[:2]) + "@" + key[2]: s.as_dict() for key, s in sorted(self._stats.items())
        }

    def prometheus(self) -> bytes:
        return generate_latest(self.registry)
