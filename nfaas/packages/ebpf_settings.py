"""The ``ebpf`` section of a function descriptor: an eBPF VNF (EVE025 5.7, 6.6.1).

ETSI key issues #5.2 and #5.3 ask the descriptor of an eBPF VNF to say where
it runs and what it needs from the kernel: the program's type and section,
its hook (interface, direction, attach mode), the kernel version or helpers
it relies on, and its maps with their sizes and entry counts, marked as its
configuration, its counters or its own state. Onboarding checks every map
against the object (``nfaas.ebpf.objects``); the field layouts below let the
API turn a rule written as JSON into the bytes of a map key and value, and a
counter's bytes into metrics.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

C_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"

FieldType = Literal["u8", "u16", "u32", "u64", "be16", "be32", "ipv4", "ipv6", "mac", "pad"]
#: bytes of each field type; ``pad`` takes its ``size``
FIELD_SIZES: dict[str, int] = {
    "u8": 1, "u16": 2, "u32": 4, "u64": 8, "be16": 2, "be32": 4, "ipv4": 4, "ipv6": 16, "mac": 6,
}  # fmt: skip
INTEGER_TYPES = frozenset({"u8", "u16", "u32", "u64", "be16", "be32"})

MapType = Literal[
    "hash", "array", "percpu_hash", "percpu_array", "lru_hash", "lru_percpu_hash", "lpm_trie"
]
MapRole = Literal["config", "counters", "state"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MapField(_Model):
    """One field of a map key or value, in order, as the C struct lays it out."""

    name: str = Field(pattern=C_IDENTIFIER, max_length=64)
    type: FieldType = Field(
        description="u8/u16/u32/u64 host order, be16/be32 network order, ipv4, ipv6, mac, pad"
    )
    size: int | None = Field(
        default=None, ge=1, le=256, description="bytes of a pad field (padding is always zero)"
    )
    values: dict[str, int] = Field(
        default_factory=dict,
        description="symbolic names of an integer field's values, e.g. {pass: 0, drop: 1}",
    )
    required: bool = Field(
        default=False, description="a rule must give this field; otherwise it is zero"
    )

    @property
    def byte_size(self) -> int:
        return self.size if self.type == "pad" and self.size else FIELD_SIZES.get(self.type, 0)

    @model_validator(mode="after")
    def _consistent(self) -> MapField:
        if self.type == "pad":
            if self.size is None:
                raise ValueError("a pad field needs a 'size'")
            if self.values or self.required:
                raise ValueError("a pad field is always zero: no 'values', not 'required'")
        elif self.size is not None:
            raise ValueError(f"'size' is only for pad fields; a {self.type} has its own size")
        if self.values:
            if self.type not in INTEGER_TYPES:
                raise ValueError("'values' names integers: only for u8..u64, be16, be32 fields")
            top = (1 << (8 * FIELD_SIZES[self.type])) - 1
            bad = [k for k, v in self.values.items() if not 0 <= v <= top]
            if bad:
                raise ValueError(f"values {', '.join(bad)} do not fit in a {self.type}")
        return self


class EbpfMap(_Model):
    """A map of the object, as the descriptor declares it (EVE025 key issue #5.3)."""

    name: str = Field(
        pattern=C_IDENTIFIER, max_length=15, description="the map's name in the object"
    )
    type: MapType
    key_size: int = Field(ge=1, le=512, description="bytes of a key")
    value_size: int = Field(ge=1, le=65536, description="bytes of a value (one CPU's, if per-CPU)")
    max_entries: int = Field(ge=1, le=1 << 24)
    role: MapRole = Field(
        description="config: written through the API to reconfigure the VNF; counters: read as "
        "metrics; state: the program's own (read-only from outside)"
    )
    key: list[MapField] = Field(default_factory=list, description="the key's fields, in order")
    value: list[MapField] = Field(default_factory=list, description="the value's fields, in order")

    @property
    def per_cpu(self) -> bool:
        return self.type.startswith("percpu") or self.type == "lru_percpu_hash"

    @model_validator(mode="after")
    def _layouts(self) -> EbpfMap:
        for part, fields, size in (("key", self.key, self.key_size), ("value", self.value, self.value_size)):  # fmt: skip
            names = [f.name for f in fields]
            if len(names) != len(set(names)):
                raise ValueError(f"{part} field names must be unique")
            total = sum(f.byte_size for f in fields)
            if fields and total != size:
                raise ValueError(
                    f"the {part} fields take {total} bytes but {part}_size is {size} "
                    "(declare padding as a pad field)"
                )
        if self.role in ("config", "counters") and not (self.key and self.value):
            raise ValueError(f"a {self.role} map needs 'key' and 'value' field layouts")
        if self.role == "counters" and not any(f.type in INTEGER_TYPES for f in self.value):
            raise ValueError("a counters map needs at least one integer value field")
        if self.type in ("array", "percpu_array") and self.key_size != 4:
            raise ValueError("an array map has 4-byte keys (u32 index)")
        return self


class EbpfProgram(_Model):
    type: Literal["xdp", "tc"] = Field(description="xdp: XDP hook; tc: clsact (cls_bpf) hook")
    section: str = Field(
        min_length=1, max_length=128, description="ELF section of the program, e.g. xdp or tc"
    )


class EbpfHook(_Model):
    interface: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.:-]{1,15}$",
        description="default interface; an instantiation may name another",
    )
    direction: Literal["ingress", "egress"] = Field(
        default="ingress", description="XDP is ingress only; tc hooks either"
    )
    attach_mode: Literal["generic", "native"] = Field(
        default="generic", description="XDP only: generic (SKB) or native (driver) mode"
    )


class EbpfRequirements(_Model):
    kernel: str | None = Field(
        default=None,
        pattern=r"^[0-9]+\.[0-9]+(\.[0-9]+)?$",
        description="oldest kernel the program runs on, e.g. 5.10; checked at onboarding",
    )
    helpers: list[str] = Field(
        default_factory=list,
        description="BPF helpers the program calls (bpf_map_lookup_elem, ...); each is probed "
        "on this kernel for the program type at onboarding",
    )


class EbpfSettings(_Model):
    """An eBPF VNF: what runs in the kernel, where, and what it needs (EVE025 6.6.1)."""

    program: EbpfProgram
    hook: EbpfHook = Field(default_factory=EbpfHook)
    requires: EbpfRequirements = Field(default_factory=EbpfRequirements)
    maps: list[EbpfMap] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> EbpfSettings:
        if self.program.type == "xdp" and self.hook.direction == "egress":
            raise ValueError("hook.direction: XDP runs on ingress only; use program type tc")
        if self.program.type == "tc" and self.hook.attach_mode != "generic":
            raise ValueError("hook.attach_mode: native is for XDP; tc programs have no mode")
        names = [m.name for m in self.maps]
        if len(names) != len(set(names)):
            raise ValueError("map names must be unique")
        for helper in self.requires.helpers:
            if not helper.startswith("bpf_") or not helper.replace("_", "a").isalnum():
                raise ValueError(f"requires.helpers: {helper!r} is not a helper name (bpf_...)")
        return self

    def map(self, name: str) -> EbpfMap | None:
        return next((m for m in self.maps if m.name == name), None)
