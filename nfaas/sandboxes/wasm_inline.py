"""The wasm backend's inline policy: which functions run on the event loop's own thread.

A call into a small, bounded function costs less than the two thread crossings of
running it on its own thread (~0.1 ms on the 2-core development VM, more than the
call itself), so ``WasmSandbox.load`` decides once where the function runs.

**Inline**, on the caller's thread (the event loop), when a call's work is bounded
and small: the module imports nothing (a host call runs outside fuel), its code holds
no instruction that burns one unit of fuel for work that grows with an operand (bulk
memory and table instructions, GC arrays, atomic waits; see
``wasm_abi.may_run_unmetered``), its fuel budget is at most ``InlinePolicy.fuel`` and
its memory limit at most ``InlinePolicy.memory_mb``. Fuel is counted per instruction,
so the budget bounds a call's work deterministically, whatever the machine's load;
the memory limit bounds the pages a call can touch for the first time, which the
kernel zeroes outside fuel. Measured on the development VM, the dearest instructions
per unit of fuel are loads that miss the caches (a pointer chase, up to ~140 ns per
unit; a plain loop burns one in ~3.4 ns), and a page touched first costs ~4.7 us. At
the defaults (20,000 fuel, 4 MB) a call holds the event loop for at most ~3 ms of
instructions, plus at most ~5 ms of first touches over the instance's whole life
(measured worst calls: 1.8 ms chasing pointers, 4.8 ms growing and touching all
4 MB). The epoch deadline stays armed: a call into Wasm releases the GIL, so the
ticker keeps ticking (``wasm_engine``).

On **its own thread** otherwise (no fuel, a larger budget, imports, unmetered
instructions, or a precompiled module whose source is not at hand to check): see
``wasm_thread``. ``docs/wasm-abi.md`` gives the full table of measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

from nfaas.sandboxes.wasm_abi import ModuleShape

#: Defaults of the policy, for a worst-case stall of the event loop of a few ms: at most
#: ~140 ns of work per unit of fuel and ~4.7 us per 4 KiB page touched first (module doc).
#: The example classify function burns ~300 units per event.
INLINE_FUEL = 20_000
INLINE_MEMORY_MB = 4


@dataclass(frozen=True, slots=True)
class InlinePolicy:
    """The largest fuel budget and memory limit of a function allowed on the event loop."""

    #: 0: no function runs inline
    fuel: int = INLINE_FUEL
    memory_mb: int = INLINE_MEMORY_MB

    def allows(self, shape: ModuleShape, fuel: int, memory_mb: int) -> bool:
        """Whether a module of ``shape``, with this budget and memory limit, may run inline."""
        return shape.fuel_bounded and fuel <= self.fuel and memory_mb <= self.memory_mb
