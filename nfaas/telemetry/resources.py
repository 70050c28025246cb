"""Gauges of what the node holds, read at scrape time: pools, capacity, version weights.

Per-version invocation metrics live in ``metrics.py``; these describe shared
resources and the version-mapping policies (EVE025 7.2.3 and 7.2.5), from
sources the platform wires in, so this module imports nothing of the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from nfaas.lifecycle.pools import PoolSnapshot


@dataclass(frozen=True, slots=True)
class ResourceSources:
    pools: Callable[[], Iterable[PoolSnapshot]]
    #: ``NodeCapacity.snapshot``
    node: Callable[[], dict[str, float]]
    #: (app, function, version, weight) of every serving function's policy
    weights: Callable[[], Iterable[tuple[str, str, str, int]]]
    #: (app, function, by) -> rollbacks since start
    rollbacks: Callable[[], dict[tuple[str, str, str], int]]


class ResourceCollector:
    def __init__(self, sources: ResourceSources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        yield from self._pools()
        node = self._sources.node()
        memory = GaugeMetricFamily(
            "nfaas_node_memory_mb", "Node memory: capacity and reserved", labels=["kind"]
        )
        memory.add_metric(["capacity"], node["memory_mb"])
        memory.add_metric(["reserved"], node["memory_reserved_mb"])
        cpu = GaugeMetricFamily(
            "nfaas_node_cpu", "Node CPU: capacity and reserved", labels=["kind"]
        )
        cpu.add_metric(["capacity"], node["cpu"])
        cpu.add_metric(["reserved"], node["cpu_reserved"])
        yield from (memory, cpu)
        weight = GaugeMetricFamily(
            "nfaas_version_weight",
            "Share of a function's events its version-mapping policy gives a version (percent)",
            labels=["app", "function", "version"],
        )
        for app, function, version, share in self._sources.weights():
            weight.add_metric([app, function, version], share)
        rollbacks = CounterMetricFamily(
            "nfaas_version_rollbacks",
            "Rollbacks to the stable version, by who decided (auto, manual)",
            labels=["app", "function", "by"],
        )
        for (app, function, by), count in self._sources.rollbacks().items():
            rollbacks.add_metric([app, function, by], count)
        yield from (weight, rollbacks)

    def _pools(self) -> Iterator[Metric]:
        labels = ["pool", "runtime", "backend"]
        sandboxes = GaugeMetricFamily(
            "nfaas_pool_sandboxes", "Prepared sandboxes in a runtime pool, by state",
            labels=[*labels, "state"],
        )  # fmt: skip
        size = GaugeMetricFamily("nfaas_pool_size", "A runtime pool's target size", labels=labels)
        taken = CounterMetricFamily(
            "nfaas_pool_taken", "Sandboxes instances took from a runtime pool", labels=labels
        )
        errors = CounterMetricFamily(
            "nfaas_pool_errors", "Sandboxes a runtime pool failed to prepare", labels=labels
        )
        for pool in self._sources.pools():
            values = [pool.id, pool.runtime, pool.backend]
            sandboxes.add_metric([*values, "ready"], pool.ready)
            sandboxes.add_metric([*values, "preparing"], pool.preparing)
            size.add_metric(values, pool.size)
            taken.add_metric(values, pool.taken)
            errors.add_metric(values, pool.errors)
        yield from (sandboxes, size, taken, errors)
