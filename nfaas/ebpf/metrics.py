"""eBPF VNF metrics for ``/metrics``, read from the kernel at scrape time (EVE025 7.2.5).

An eBPF VNF counts in its own maps (per-CPU, without locks); the platform
reads those declared with the role ``counters`` when scraped, sums them over
CPUs and names each integer field of the value. Only non-zero entries are
exported, so a 1,024-slot counter array costs one series per rule in use.
Names and labels are listed in ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from nfaas.ebpf.instances import InstanceState
from nfaas.ebpf.manager import EbpfManager


class EbpfCollector:
    def __init__(self, manager: EbpfManager) -> None:
        self._manager = manager

    def collect(self) -> Iterator[Metric]:
        instances = GaugeMetricFamily(
            "nfaas_ebpf_instances",
            "eBPF VNF instances attached, by program type",
            labels=["app", "function", "version", "program_type"],
        )
        init = GaugeMetricFamily(
            "nfaas_ebpf_instantiation_seconds",
            "Load, verification and attachment time of each eBPF instance",
            labels=["app", "function", "instance", "hook"],
        )
        memory = GaugeMetricFamily(
            "nfaas_ebpf_memory_bytes",
            "Estimated kernel memory of each eBPF instance (maps and program)",
            labels=["app", "function", "instance"],
        )
        counters = CounterMetricFamily(
            "nfaas_ebpf_counter",
            "Integer fields of the eBPF counters maps, summed over CPUs",
            labels=["app", "function", "instance", "interface", "map", "key", "field"],
        )
        per_version: dict[tuple[str, str, str, str], int] = {}
        for inst in self._manager.instances():
            if inst.state is not InstanceState.ATTACHED:
                continue
            key = (inst.app, inst.function, inst.version, inst.settings.program.type)
            per_version[key] = per_version.get(key, 0) + 1
            init.add_metric([inst.app, inst.function, inst.id, str(inst.hook)], inst.init_seconds)
            memory.add_metric([inst.app, inst.function, inst.id], inst.footprint.get("total", 0))
            for map_name, label, field, value in inst.counters():
                counters.add_metric(
                    [inst.app, inst.function, inst.id, inst.hook.interface, map_name, label, field],
                    value,
                )
        for (app, fn, version, kind), count in sorted(per_version.items()):
            instances.add_metric([app, fn, version, kind], count)
        yield from (instances, init, memory, counters)


def counters_json(manager: EbpfManager, tenant: str | None) -> dict[str, object]:
    """``{instance: {app, function, hook, counters: {map: {key: {field: n}}}}}`` for the JSON API."""
    out: dict[str, object] = {}
    for inst in manager.instances():
        if inst.state is not InstanceState.ATTACHED:
            continue
        if tenant is not None and inst.tenant != tenant:
            continue
        out[inst.id] = {
            "app": inst.app,
            "function": inst.function,
            "version": inst.version,
            "hook": str(inst.hook),
            "counters": inst.counters_json(),
        }
    return out
