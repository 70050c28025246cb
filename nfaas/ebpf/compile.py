"""Compile restricted C into a BPF ELF object with the distribution's clang.

EVE025 5.7 describes an eBPF VNF as restricted C compiled to BPF byte code
and 6.6.1 puts that step in onboarding: a package may carry the source, and
onboarding turns it into the object that instantiation later loads. A
source that does not compile is a refused package (``PackageError``) whose
detail carries clang's own diagnostics.

The include path adds the multiarch folder (``/usr/include/x86_64-linux-gnu``
on Debian) because ``-target bpf`` drops it, and ``<linux/types.h>`` needs its
``<asm/types.h>``; libbpf's headers (``<bpf/bpf_helpers.h>``) come from
Debian's ``libbpf-dev`` under ``/usr/include``.
"""

from __future__ import annotations

import asyncio
import platform
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from nfaas.errors import BackendUnavailable, PackageError

#: the flags issue 4 and the kernel's BPF documentation ask for
BASE_FLAGS: tuple[str, ...] = ("-O2", "-g", "-target", "bpf")
#: how much of clang's stderr reaches the error detail; the full text is in ``extra``
DETAIL_STDERR_CHARS = 4000

_ARCH_DEFINES = {"x86_64": "x86", "aarch64": "arm64", "armv7l": "arm", "riscv64": "riscv"}


def find_clang(clang: str | None = None) -> str:
    """The clang executable to use; raises ``BackendUnavailable`` if there is none."""
    found = shutil.which(clang or "clang")
    if found is None:
        raise BackendUnavailable(
            f"cannot compile eBPF programs: {clang or 'clang'!r} not found "
            "(install Debian's clang, see scripts/setup)"
        )
    return found


def multiarch_include(clang: str) -> Path | None:
    """The multiarch include folder holding ``asm/types.h``, if this system has one."""
    try:
        triple = subprocess.run(
            [clang, "-print-multiarch"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        triple = ""
    candidate = Path("/usr/include") / triple if triple else None
    return candidate if candidate is not None and candidate.is_dir() else None


def compile_command(
    source: Path,
    output: Path,
    *,
    clang: str,
    include_dirs: Sequence[Path] = (),
    defines: Sequence[str] = (),
) -> list[str]:
    """The clang command line that compiles ``source`` into ``output``."""
    command = [clang, *BASE_FLAGS]
    arch = _ARCH_DEFINES.get(platform.machine())
    if arch:
        # bpf_tracing.h and CO-RE helpers choose register layouts by this macro
        command.append(f"-D__TARGET_ARCH_{arch}")
    command += [f"-D{d}" for d in defines]
    command += [f"-I{d}" for d in include_dirs]
    multiarch = multiarch_include(clang)
    if multiarch is not None:
        command.append(f"-idirafter{multiarch}")
    command += ["-c", str(source), "-o", str(output)]
    return command


async def compile_bpf(
    source: Path,
    output: Path,
    *,
    clang: str | None = None,
    include_dirs: Sequence[Path] = (),
    defines: Sequence[str] = (),
    timeout_s: float = 60.0,
) -> Path:
    """Compile ``source`` (restricted C) into the BPF ELF object ``output``.

    Raises ``PackageError`` with clang's stderr when the source does not
    compile or clang runs over ``timeout_s``, and ``BackendUnavailable`` when
    there is no clang. A failed compilation leaves no partial ``output``.
    """
    if not source.is_file():
        raise PackageError(f"eBPF source {source} does not exist", source=str(source))
    exe = find_clang(clang)
    command = compile_command(source, output, clang=exe, include_dirs=include_dirs, defines=defines)
    output.parent.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, stderr_bytes = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        output.unlink(missing_ok=True)
        raise PackageError(
            f"clang did not compile {source.name} within {timeout_s:g} s",
            source=str(source),
            command=command,
        ) from None
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        output.unlink(missing_ok=True)
        raise
    stderr = stderr_bytes.decode(errors="replace")
    if proc.returncode != 0:
        output.unlink(missing_ok=True)
        shown = (
            stderr if len(stderr) <= DETAIL_STDERR_CHARS else stderr[:DETAIL_STDERR_CHARS] + "..."
        )
        raise PackageError(
            f"eBPF source {source.name} does not compile (clang exit {proc.returncode}):\n{shown}",
            source=str(source),
            command=command,
            stderr=stderr,
        )
    return output
