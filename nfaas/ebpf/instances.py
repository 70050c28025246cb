"""One running eBPF VNF: a loaded program on a hook, with its maps as JSON.

EVE025 6.6.1: once instantiated, an eBPF VNF is reconfigured by writing its
configuration maps and observed by reading its counters, without reload and
without pausing the data path. An ``EbpfInstance`` owns its ``BpfProgram``
and checks every access against the descriptor: only maps declared with the
role ``config`` are written from outside, every key and value is encoded by
the declared layout (``MapLayout``), and a refused write changes nothing.

Map accesses are single system calls made on the event loop's thread, as is
the state change that starts a termination; so no access can reach a map's
file descriptor after the object was closed (and the number reused).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from nfaas.ebpf.layout import MapLayout
from nfaas.ebpf.loader import BpfProgram, Hook
from nfaas.ebpf.maps import BpfMap
from nfaas.errors import Conflict, InvalidRequest, NotFound
from nfaas.lifecycle.infra import Reservation
from nfaas.packages.ebpf_settings import EbpfMap, EbpfSettings

#: most entries one read of a map returns
MAX_ENTRIES_READ = 4096


class InstanceState(enum.Enum):
    ATTACHED = "attached"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


@dataclass
class EbpfInstance:
    id: str
    app: str
    function: str
    version: str
    tenant: str
    settings: EbpfSettings
    hook: Hook
    program: BpfProgram
    #: load + verify + attach, seconds (use case #6 steps 4-6)
    init_seconds: float
    #: estimated kernel memory, bytes, by map and program (``objects.footprint``)
    footprint: dict[str, int]
    reservation: Reservation | None = None
    created_at: float = field(default_factory=time.time)
    state: InstanceState = InstanceState.ATTACHED

    # -- maps ---------------------------------------------------------------

    def spec(self, map_name: str) -> EbpfMap:
        spec = self.settings.map(map_name)
        if spec is None:
            declared = ", ".join(m.name for m in self.settings.maps) or "none"
            raise NotFound(
                f"instance {self.id} has no declared map {map_name!r} (declared: {declared})",
                map=map_name,
            )
        return spec

    def _map(self, spec: EbpfMap) -> BpfMap:
        if self.state is not InstanceState.ATTACHED:
            raise Conflict(f"instance {self.id} is {self.state.value}")
        return self.program.maps[spec.name]

    def layouts(self, spec: EbpfMap) -> tuple[MapLayout, MapLayout]:
        return MapLayout(spec.name, "key", spec.key), MapLayout(spec.name, "value", spec.value)

    def _writable(self, map_name: str) -> tuple[EbpfMap, MapLayout, MapLayout]:
        spec = self.spec(map_name)
        if spec.role != "config":
            raise Conflict(
                f"map {map_name!r} holds the program's {spec.role}; only maps with role config "
                "are written from outside",
                map=map_name,
            )
        key_layout, value_layout = self.layouts(spec)
        return spec, key_layout, value_layout

    def write(self, map_name: str, key: object, value: object) -> dict[str, Any]:
        """Set one entry of a configuration map (add or change a rule); the entry as stored."""
        spec, key_layout, value_layout = self._writable(map_name)
        raw_key, raw_value = key_layout.encode(key), value_layout.encode(value)
        bpf_map = self._map(spec)
        try:
            bpf_map.update(raw_key, raw_value)
        except OSError as exc:
            # E2BIG: a full hash map; EINVAL: an array index out of range
            raise InvalidRequest(
                f"map {map_name!r} refused the entry: {exc.strerror}", map=map_name
            ) from exc
        return {"key": key_layout.decode(raw_key), "value": value_layout.decode(raw_value)}

    def remove(self, map_name: str, key: object) -> None:
        """Delete one entry of a configuration map (an array's entry is reset to zero)."""
        spec, key_layout, _ = self._writable(map_name)
        raw_key = key_layout.encode(key)
        bpf_map = self._map(spec)
        if spec.type in ("array", "percpu_array"):
            if bpf_map.lookup(raw_key) is None:
                raise NotFound(f"map {map_name!r} has no index {key_layout.label(raw_key)}")
            bpf_map.update(raw_key, bytes(spec.value_size))
            return
        bpf_map.delete(raw_key)

    def entries(self, map_name: str, limit: int = MAX_ENTRIES_READ) -> list[dict[str, Any]]:
        """The entries of a declared map; per-CPU integer fields summed over the CPUs.

        An array lists only its entries that are not all zero.
        """
        spec = self.spec(map_name)
        if not (spec.key and spec.value):
            raise InvalidRequest(f"map {map_name!r} declares no key/value layout to read it by")
        key_layout, value_layout = self.layouts(spec)
        rows: list[dict[str, Any]] = []
        for raw_key, raw_value in self._raw_entries(spec):
            rows.append(
                {"key": key_layout.decode(raw_key), "value": value_layout.decode(raw_value)}
            )
            if len(rows) >= limit:
                break
        return rows

    def _raw_entries(self, spec: EbpfMap) -> list[tuple[bytes, bytes]]:
        bpf_map = self._map(spec)
        _, value_layout = self.layouts(spec)
        out: list[tuple[bytes, bytes]] = []
        for raw_key in bpf_map.keys():
            values = bpf_map.lookup_per_cpu(raw_key)
            if not values:
                continue  # deleted meanwhile
            value = values[0] if len(values) == 1 else _sum_per_cpu(value_layout, values)
            if spec.type.endswith("array") and not any(value):
                continue
            out.append((raw_key, value))
            if len(out) >= MAX_ENTRIES_READ:
                break
        return out

    def counters(self) -> list[tuple[str, str, str, int]]:
        """(map, key label, field, value) of every non-zero counter, summed over CPUs."""
        out: list[tuple[str, str, str, int]] = []
        for spec in self.settings.maps:
            if spec.role != "counters":
                continue
            key_layout, value_layout = self.layouts(spec)
            for raw_key, raw_value in self._raw_entries(spec):
                label = key_layout.label(raw_key)
                for name, number in value_layout.integers(raw_value).items():
                    out.append((spec.name, label, name, number))
        return out

    def counters_json(self) -> dict[str, dict[str, dict[str, int]]]:
        out: dict[str, dict[str, dict[str, int]]] = {}
        for map_name, key, name, number in self.counters():
            out.setdefault(map_name, {}).setdefault(key, {})[name] = number
        return out

    def as_dict(self) -> dict[str, Any]:
        attachment = self.program.attachment
        return {
            "id": self.id,
            "app": self.app,
            "function": self.function,
            "version": self.version,
            "state": self.state.value,
            "program": self.program.program,
            "program_type": self.settings.program.type,
            "hook": str(self.hook),
            "interface": self.hook.interface,
            "netns": self.hook.netns,
            "direction": getattr(self.hook, "direction", "ingress"),
            "attach_mode": getattr(self.hook, "mode", None),
            "prog_id": self.program.prog_id,
            "ifindex": attachment.ifindex if attachment else None,
            "init_ms": round(self.init_seconds * 1000, 3),
            "memory_bytes": self.footprint.get("total", 0),
            "footprint_bytes": dict(self.footprint),
            "maps": {m.name: m.role for m in self.settings.maps},
            "created_at": self.created_at,
        }


def _sum_per_cpu(layout: MapLayout, values: list[bytes]) -> bytes:
    """One value whose integer fields are the sums over CPUs (others from CPU 0)."""
    if not layout.fields:
        return values[0]
    totals: dict[str, int] = {}
    for value in values:
        for name, number in layout.integers(value).items():
            totals[name] = totals.get(name, 0) + number
    fields = layout.decode(values[0])
    fields.update(totals)
    try:
        return layout.encode({k: v for k, v in fields.items()})
    except InvalidRequest:
        return values[0]  # a sum too large for its field: show CPU 0's
