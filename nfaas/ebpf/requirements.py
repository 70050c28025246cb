"""Whether this node's kernel offers what an eBPF VNF says it needs (EVE025 key issue #5.2).

A descriptor may name the oldest kernel its program runs on and the BPF
helpers it calls. Onboarding checks both on the node that will run it: the
version against ``uname -r``, each helper by asking the kernel's verifier
whether a program of that type may call it (``helper_offered``). A helper is named as in
C (``bpf_map_lookup_elem``); its number comes from libbpf's own
``bpf_helper_defs.h``, the header the program was compiled against.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import re
import struct
from pathlib import Path

from nfaas.ebpf import libbpf as lb
from nfaas.ebpf.objects import PROG_TYPES
from nfaas.errors import BackendUnavailable, PackageError
from nfaas.packages.ebpf_settings import EbpfSettings

HELPER_DEFS = Path("/usr/include/bpf/bpf_helper_defs.h")
#: how the verifier says a helper is not there, across kernel versions
_REFUSALS = ("unknown func", "invalid func", "cannot use helper", "cannot call")
_PROBE_LOG = 4096
_HELPER = re.compile(
    r"\(\s*\*\s*(?:const\s+)?(bpf_\w+)\s*\)\s*\(.*?\)\s*=\s*\(void \*\)\s*(\d+)\s*;"
)


def kernel_version(release: str | None = None) -> tuple[int, ...]:
    """``6.1.0-18-amd64`` -> (6, 1, 0)."""
    match = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", release or platform.release())
    return tuple(int(x) for x in match.groups(default="0")) if match else (0, 0, 0)


@functools.cache
def helper_ids(path: Path = HELPER_DEFS) -> dict[str, int]:
    """Helper name -> number, from libbpf's header (cached: it is a system file)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise BackendUnavailable(
            f"cannot check BPF helpers: {path} is missing (install libbpf-dev)"
        ) from exc
    return {name: int(number) for name, number in _HELPER.findall(text)}


def check_requirements(settings: EbpfSettings, what: str, release: str | None = None) -> None:
    """``PackageError`` naming the first thing this kernel lacks; runs probes (needs CAP_BPF)."""
    needs = settings.requires
    if needs.kernel is not None:
        wanted = kernel_version(needs.kernel)
        running = kernel_version(release)
        if running < wanted:
            raise PackageError(
                f"{what}: ebpf.requires.kernel: needs kernel {needs.kernel} or newer, "
                f"this node runs {'.'.join(map(str, running))}"
            )
    if not needs.helpers:
        return
    ids = helper_ids()
    unknown = [h for h in needs.helpers if h not in ids]
    if unknown:
        raise PackageError(f"{what}: ebpf.requires.helpers: unknown helper(s) {', '.join(unknown)}")
    prog_type = PROG_TYPES[settings.program.type]
    for helper in needs.helpers:
        if not helper_offered(prog_type, ids[helper], what):
            raise PackageError(
                f"{what}: ebpf.requires.helpers: this kernel does not offer {helper} "
                f"to {settings.program.type} programs"
            )


def helper_offered(prog_type: int, helper_id: int, what: str = "probe") -> bool:
    """Whether the verifier lets a program of ``prog_type`` call helper ``helper_id``.

    libbpf 1.1's ``libbpf_probe_bpf_helper`` looks for "unknown func" in the
    verifier's log, but newer kernels say "program of this type cannot use
    helper", and it then answers yes for every helper. So the probe is made
    here the same way (a call of the helper, then exit) and the log read for
    every refusal wording; the program's arguments are never set, so even an
    offered helper fails to load, with another message.
    """
    lib = lb.libbpf()
    insns = struct.pack("<BBhi", 0x85, 0, 0, helper_id) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    code = ctypes.create_string_buffer(insns, len(insns))
    log = ctypes.create_string_buffer(_PROBE_LOG)
    opts = lb.ProgLoadOpts(
        sz=ctypes.sizeof(lb.ProgLoadOpts),
        log_level=1,
        log_size=_PROBE_LOG,
        log_buf=ctypes.cast(log, ctypes.c_void_p),
    )
    fd = lib.bpf_prog_load(prog_type, None, b"GPL", code, 2, ctypes.byref(opts))
    if fd >= 0:
        os.close(fd)
        return True
    text = log.value.decode(errors="replace")
    if not text:
        raise BackendUnavailable(
            f"{what}: cannot probe BPF helpers: {lib.strerror(-fd)} "
            "(probing needs CAP_BPF, i.e. the platform running as root)"
        )
    return not any(refusal in text for refusal in _REFUSALS)
