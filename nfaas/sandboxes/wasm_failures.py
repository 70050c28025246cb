"""How the wasm backend tells failures apart: what a trap or a bad result means.

A call into a guest fails in wasmtime's terms (a ``Trap``, a ``WasmtimeError``) or
hands back bytes it does not own; the platform answers with one of its own errors:

    trap OUT_OF_FUEL                          FunctionTimeout  "ran out of fuel after N"
    trap INTERRUPT (epoch deadline)           FunctionTimeout  "exceeded N s"
    WASI proc_exit                            FunctionCrashed  "exited with status N"
    any other trap, memory at its ceiling     FunctionOutOfMemory
    any other trap, or a result out of bounds FunctionCrashed  (wasmtime's trap message)
    negative handler result                   FunctionRaised   (the instance survives)

The last row is the ABI's own error result, raised where the result is read
(``WasmSandbox``); every other failure loses the instance.

Memory is at its ceiling when one more 64 KiB page would pass the store's limit
(or the module's own maximum): ``memory.grow`` then returns -1, and whatever the
guest does next (``unreachable``, an abort, a write through a null pointer) is a
consequence of running out of memory. wasmtime-py exposes no resource-limiter
callback, so this is decided after the trap, from the memory's size.

wasmtime's messages carry a backtrace; ``error_summary`` keeps what a user needs,
for these failures and for refusals to compile, link or instantiate a module.
"""

from __future__ import annotations

import wasmtime

from nfaas.errors import FunctionCrashed, FunctionFailure, FunctionOutOfMemory, FunctionTimeout
from nfaas.sandboxes.base import Limits
from nfaas.sandboxes.wasm_abi import GuestExports

_PAGE = 1 << 16


def guest_failure(
    exc: Exception, guest: GuestExports, limits: Limits, *, fuel: int, memory_limit: int
) -> FunctionFailure:
    """The failure a call that raised ``exc`` from wasmtime amounts to (the table above).

    ``fuel`` is the call's budget and ``memory_limit`` the store's limit in bytes.
    """
    code = exc.trap_code if isinstance(exc, wasmtime.Trap) else None
    if code is wasmtime.TrapCode.OUT_OF_FUEL:
        return FunctionTimeout(f"ran out of fuel after {fuel}", fuel=fuel)
    if code is wasmtime.TrapCode.INTERRUPT:
        timeout = limits.timeout_s
        return FunctionTimeout(f"exceeded {timeout:g} s", timeout_s=timeout)
    if isinstance(exc, wasmtime.ExitTrap):
        return FunctionCrashed(f"the module exited with status {exc.code}", status=exc.code)
    summary = error_summary(exc)
    if _at_memory_ceiling(guest, memory_limit):
        mb = limits.memory_mb
        return FunctionOutOfMemory(f"linear memory reached its {mb} MB limit, then: {summary}")
    return FunctionCrashed(summary, trap=code.name.lower() if code else None)


def check_span(size: int, ptr: int, length: int, who: str) -> None:
    """Raise ``FunctionCrashed`` unless ``who``'s bytes lie within ``size`` bytes of memory."""
    if ptr + length > size:
        raise FunctionCrashed(
            f"{who} gave bytes {ptr}..{ptr + length} outside linear memory ({size} bytes)"
        )


def error_summary(exc: Exception) -> str:
    """wasmtime's message without its backtrace: the 'Caused by' lines, or the first line."""
    text = str(exc).strip()
    head, sep, cause = text.partition("Caused by:")
    lines = [line.strip() for line in (cause if sep else head).splitlines() if line.strip()]
    summary = "; ".join(lines) if sep else (lines[0] if lines else type(exc).__name__)
    if isinstance(exc, wasmtime.Trap):
        frames = exc.frames
        if frames and frames[0].func_name:
            summary += f" (in {frames[0].func_name})"
    return summary


def _at_memory_ceiling(guest: GuestExports, memory_limit: int) -> bool:
    ceiling = memory_limit
    declared = guest.memory.type(guest.store).limits.max
    if declared is not None:
        ceiling = min(ceiling, declared * _PAGE)
    return guest.refresh() + _PAGE > ceiling
