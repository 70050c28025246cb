"""What a BPF object holds, checked against its descriptor, and what it will cost.

EVE025 6.6.1 and key issue #5.3: the descriptor of an eBPF VNF declares its
program and maps, and onboarding must refuse a package whose object says
otherwise -- a map of another size would make every reconfiguration write
garbage into the kernel. ``inspect_object`` opens the object with libbpf
without loading anything into the kernel; ``check_object`` compares, naming
each difference by descriptor field; ``footprint`` estimates the kernel
memory an instance takes, from the maps' sizes and entry counts.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from nfaas.ebpf import libbpf as lb
from nfaas.ebpf.maps import MapInfo
from nfaas.errors import EbpfObjectMismatch, PackageError
from nfaas.packages.ebpf_settings import EbpfMap, EbpfSettings

# enum bpf_map_type and enum bpf_prog_type (include/uapi/linux/bpf.h)
MAP_TYPES: dict[str, int] = {
    "hash": 1, "array": 2, "percpu_hash": 5, "percpu_array": 6, "lru_hash": 9,
    "lru_percpu_hash": 10, "lpm_trie": 11,
}  # fmt: skip
MAP_TYPE_NAMES = {number: name for name, number in MAP_TYPES.items()}
PROG_TYPES: dict[str, int] = {"tc": 3, "xdp": 6}  # BPF_PROG_TYPE_SCHED_CLS, BPF_PROG_TYPE_XDP

#: kernel bookkeeping per hash-table element (struct htab_elem, rounded up)
_HASH_ELEM_OVERHEAD = 48
_TRIE_NODE_OVERHEAD = 40
#: bytes per BPF instruction, counted twice: the verified copy and the JIT image
_INSN_BYTES = 16


@dataclass(frozen=True, slots=True)
class ObjectProgram:
    name: str
    section: str
    type: int
    instructions: int


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    programs: dict[str, ObjectProgram]
    #: the object's own maps; libbpf's internal ones (.rodata, .bss) left out
    maps: dict[str, MapInfo]


def inspect_object(data: bytes, what: str) -> ObjectInfo:
    """Programs and maps of an ELF object, read by libbpf without touching the kernel."""
    lib = lb.libbpf()
    buf = ctypes.create_string_buffer(data, len(data))
    with lib.capture() as messages:
        obj = lib.bpf_object__open_mem(buf, len(data), None)
    if not obj:
        said = "".join(messages).strip() or "libbpf said nothing more"
        raise PackageError(f"{what}: not a BPF object libbpf can open: {said}")
    try:
        programs: dict[str, ObjectProgram] = {}
        prog = lib.bpf_object__next_program(obj, None)
        while prog:
            name = lib.bpf_program__name(prog).decode()
            programs[name] = ObjectProgram(
                name,
                (lib.bpf_program__section_name(prog) or b"").decode(),
                lib.bpf_program__type(prog),
                int(lib.bpf_program__insn_cnt(prog)),
            )
            prog = lib.bpf_object__next_program(obj, prog)
        maps: dict[str, MapInfo] = {}
        m = lib.bpf_object__next_map(obj, None)
        while m:
            info = MapInfo(
                name=lib.bpf_map__name(m).decode(),
                type=lib.bpf_map__type(m),
                key_size=lib.bpf_map__key_size(m),
                value_size=lib.bpf_map__value_size(m),
                max_entries=lib.bpf_map__max_entries(m),
            )
            if "." not in info.name:
                maps[info.name] = info
            m = lib.bpf_object__next_map(obj, m)
    finally:
        lib.bpf_object__close(obj)
    return ObjectInfo(programs, maps)


def mismatches(info: ObjectInfo, handler: str, settings: EbpfSettings) -> list[dict[str, str]]:
    """Every difference between object and descriptor, as ``{loc, msg}`` by descriptor field."""
    found: list[dict[str, str]] = []
    prog = info.programs.get(handler)
    if prog is None:
        have = ", ".join(f"{p.name} (section {p.section})" for p in info.programs.values())
        found.append(
            {
                "loc": "handler",
                "msg": f"the object has no program {handler!r} (it has: {have or 'none'})",
            }
        )
    else:
        if prog.section != settings.program.section:
            found.append(
                {
                    "loc": "ebpf.program.section",
                    "msg": f"program {handler} is in section {prog.section!r}, "
                    f"not {settings.program.section!r}",
                }
            )
        wanted = PROG_TYPES[settings.program.type]
        if prog.type != wanted:
            found.append(
                {
                    "loc": "ebpf.program.type",
                    "msg": f"section {prog.section!r} makes program {handler} of BPF program type "
                    f"{prog.type}, not {settings.program.type} ({wanted})",
                }
            )
    declared = {m.name for m in settings.maps}
    for i, spec in enumerate(settings.maps):
        found += _map_mismatches(f"ebpf.maps.{i}", spec, info.maps.get(spec.name), info)
    for name in sorted(set(info.maps) - declared):
        found.append(
            {
                "loc": "ebpf.maps",
                "msg": f"the object has a map {name!r} the descriptor does not declare",
            }
        )
    return found


def _map_mismatches(
    loc: str, spec: EbpfMap, got: MapInfo | None, info: ObjectInfo
) -> list[dict[str, str]]:
    if got is None:
        have = ", ".join(sorted(info.maps)) or "none"
        return [
            {"loc": f"{loc}.name", "msg": f"the object has no map {spec.name!r} (it has: {have})"}
        ]
    out = []
    got_type = MAP_TYPE_NAMES.get(got.type, f"type {got.type}")
    if got.type != MAP_TYPES[spec.type]:
        out.append(
            {
                "loc": f"{loc}.type",
                "msg": f"map {spec.name} is {got_type} in the object, not {spec.type}",
            }
        )
    for field in ("key_size", "value_size", "max_entries"):
        declared, actual = getattr(spec, field), getattr(got, field)
        if declared != actual:
            out.append(
                {
                    "loc": f"{loc}.{field}",
                    "msg": f"map {spec.name} has {field} {actual} in the object, "
                    f"the descriptor says {declared}",
                }
            )
    return out


def check_object(data: bytes, handler: str, settings: EbpfSettings, what: str) -> ObjectInfo:
    """``inspect_object`` then ``mismatches``; ``EbpfObjectMismatch`` listing them all."""
    info = inspect_object(data, what)
    found = mismatches(info, handler, settings)
    if found:
        listing = "; ".join(f"{e['loc']}: {e['msg']}" for e in found)
        raise EbpfObjectMismatch(
            f"{what}: the object does not match the descriptor: {listing}", errors=found
        )
    return info


def map_footprint(spec: EbpfMap, possible_cpus: int) -> int:
    """Bytes of kernel memory one map takes, estimated from its declared sizes."""
    key = (spec.key_size + 7) // 8 * 8
    value = (spec.value_size + 7) // 8 * 8
    cpus = possible_cpus if spec.per_cpu else 1
    n = spec.max_entries
    if spec.type in ("array", "percpu_array"):
        return n * value * cpus + (n * 8 if spec.per_cpu else 0)
    if spec.type == "lpm_trie":
        return n * (key + value + _TRIE_NODE_OVERHEAD)
    # hash tables preallocate every element; a per-CPU value is a pointer in the element
    if spec.per_cpu:
        return n * (key + 8 + _HASH_ELEM_OVERHEAD) + n * value * cpus
    return n * (key + value + _HASH_ELEM_OVERHEAD)


def footprint(
    settings: EbpfSettings, info: ObjectInfo, handler: str, possible_cpus: int
) -> dict[str, int]:
    """The estimate for one instance: each map, the program, and the total, in bytes."""
    out = {f"map:{m.name}": map_footprint(m, possible_cpus) for m in settings.maps}
    prog = info.programs.get(handler)
    out["program"] = (prog.instructions if prog else 0) * _INSN_BYTES
    out["total"] = sum(out.values())
    return out
