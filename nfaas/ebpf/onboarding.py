"""Onboarding of an eBPF VNF: build its object, check it, estimate its footprint (EVE025 6.6.1).

A package carries either a BPF ELF object or restricted C; C is compiled here
with clang (``nfaas.ebpf.compile``), once, so that instantiation only loads.
The object is then checked against the descriptor (program, section, type,
every map's type, sizes and entries) and the kernel's offer (version,
helpers), and the memory an instance will take is estimated from its maps.
Nothing is loaded into the kernel here: the verifier runs at instantiation,
on the node's kernel, where its verdict counts (use case #6 step 5).

The artefact is the object (``<handler>.bpf.o``) in the onboarding's folder,
with ``<handler>.ebpf.json`` beside it: the footprint and what the object holds.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from nfaas.ebpf import libbpf as lb
from nfaas.ebpf.compile import compile_bpf
from nfaas.ebpf.objects import check_object, footprint
from nfaas.ebpf.requirements import check_requirements
from nfaas.errors import PackageError
from nfaas.packages.descriptors import FunctionDescriptor


def report_path(object_path: Path) -> Path:
    return object_path.with_name(object_path.name.removesuffix(".bpf.o") + ".ebpf.json")


def _source_of(path: Path, what: str) -> Path:
    """The one object or C file of the function's code (a file, or a folder holding it)."""
    if path.is_file():
        candidates = [path]
    else:
        objects = sorted(path.rglob("*.o"))
        candidates = objects or sorted(path.rglob("*.c"))
    usable = [p for p in candidates if p.suffix in (".o", ".c")]
    if len(usable) != 1:
        names = ", ".join(p.name for p in usable) or "none"
        raise PackageError(
            f"{what}: code.path must be one BPF object (.o) or one C source (.c), found: {names}"
        )
    return usable[0]


async def prepare_object(fn: FunctionDescriptor, path: Path, dest: Path) -> Path:
    """Compile or copy the object into ``dest``, check it; its path. ``PackageError`` if refused."""
    settings = fn.ebpf
    if settings is None:
        raise PackageError(f"function {fn.name} has no 'ebpf' section")
    what = f"function {fn.name}"
    source = _source_of(path, what)
    output = dest / f"{fn.handler}.bpf.o"
    dest.mkdir(parents=True, exist_ok=True)
    if source.suffix == ".c":
        await compile_bpf(source, output, include_dirs=[source.parent])
    else:
        shutil.copyfile(source, output)
    try:
        data = output.read_bytes()
        info = await asyncio.to_thread(check_object, data, fn.handler, settings, what)
        await asyncio.to_thread(check_requirements, settings, what)
        cpus = lb.check(lb.libbpf().libbpf_num_possible_cpus(), "possible CPUs")
        report: dict[str, Any] = {
            "object": output.name,
            "program": fn.handler,
            "footprint_bytes": footprint(settings, info, fn.handler, cpus),
            "programs": {p.name: p.section for p in info.programs.values()},
            "maps": {
                m.name: {
                    "type": m.type,
                    "key_size": m.key_size,
                    "value_size": m.value_size,
                    "max_entries": m.max_entries,
                }
                for m in info.maps.values()
            },
        }
        report_path(output).write_text(json.dumps(report, indent=2, sort_keys=True))
    except BaseException:
        output.unlink(missing_ok=True)
        raise
    return output


def read_report(object_path: Path) -> dict[str, Any]:
    """What onboarding found about an object (``{}`` if it wrote nothing)."""
    try:
        report: dict[str, Any] = json.loads(report_path(object_path).read_text())
    except (OSError, ValueError):
        return {}
    return report
