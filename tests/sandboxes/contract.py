"""The contract every sandbox backend passes.

A backend's test module subclasses ``SandboxContract`` and provides a ``kit``
fixture: a started backend and, for each behaviour below, the code of a
function that behaves so in that backend's language.

    echo          returns the event body unchanged
    raises        raises an exception in the handler
    crashes       kills its own sandbox (exit, abort, trap)
    loops         never returns
    hogs_memory   allocates far past its memory limit
    broken        cannot even be loaded (syntax error, invalid module)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from nfaas.errors import (
    FunctionCrashed,
    FunctionOutOfMemory,
    FunctionRaised,
    FunctionTimeout,
    SandboxStartError,
)
from nfaas.sandboxes.base import Event, FunctionCode, SandboxBackend, SandboxState


@dataclass
class Kit:
    backend: SandboxBackend
    code: Callable[[str], FunctionCode]


class SandboxContract:
    async def _loaded(self, kit: Kit, behaviour: str):  # type: ignore[no-untyped-def]
        sandbox = kit.backend.create()
        assert sandbox.state is SandboxState.NEW
        await sandbox.prepare()
        assert sandbox.state is SandboxState.PREPARED
        await sandbox.load(kit.code(behaviour))
        assert sandbox.state is SandboxState.LOADED
        return sandbox

    async def test_echo_round_trip(self, kit: Kit) -> None:
        async with await self._loaded(kit, "echo") as sandbox:
            for body in (b"", b"hello", bytes(range(256)) * 64):
                result = await sandbox.invoke(Event("invoke", body))
                assert result.body == body
            assert sandbox.usable

    async def test_first_line_time_is_reported(self, kit: Kit) -> None:
        loop = asyncio.get_running_loop()
        async with await self._loaded(kit, "echo") as sandbox:
            before = loop.time()
            result = await sandbox.invoke(Event("invoke", b"x"))
            assert result.first_line_at is not None
            assert before <= result.first_line_at <= loop.time()

    async def test_raise_is_reported_and_sandbox_survives(self, kit: Kit) -> None:
        async with await self._loaded(kit, "raises") as sandbox:
            with pytest.raises(FunctionRaised) as info:
                await sandbox.invoke(Event("invoke", b"x"))
            assert info.value.detail
            assert sandbox.usable

    async def test_crash_is_reported_and_sandbox_fails(self, kit: Kit) -> None:
        async with await self._loaded(kit, "crashes") as sandbox:
            with pytest.raises(FunctionCrashed):
                await sandbox.invoke(Event("invoke", b"x"))
            assert sandbox.state is SandboxState.FAILED

    async def test_loop_times_out(self, kit: Kit) -> None:
        async with await self._loaded(kit, "loops") as sandbox:
            with pytest.raises(FunctionTimeout):
                await sandbox.invoke(Event("invoke", b"x"))
            assert sandbox.state is SandboxState.FAILED

    async def test_memory_hog_is_stopped(self, kit: Kit) -> None:
        async with await self._loaded(kit, "hogs_memory") as sandbox:
            with pytest.raises(FunctionOutOfMemory):
                await sandbox.invoke(Event("invoke", b"x"))
            assert sandbox.state is SandboxState.FAILED

    async def test_broken_code_fails_to_load(self, kit: Kit) -> None:
        sandbox = kit.backend.create()
        await sandbox.prepare()
        with pytest.raises(SandboxStartError):
            await sandbox.load(kit.code("broken"))
        assert sandbox.state is SandboxState.FAILED
        await sandbox.aclose()
        assert sandbox.state is SandboxState.CLOSED

    async def test_aclose_is_idempotent_in_every_state(self, kit: Kit) -> None:
        fresh = kit.backend.create()
        await fresh.aclose()
        await fresh.aclose()
        prepared = kit.backend.create()
        await prepared.prepare()
        await prepared.aclose()
        await prepared.aclose()
        loaded = await self._loaded(kit, "echo")
        await loaded.aclose()
        await loaded.aclose()
        for sandbox in (fresh, prepared, loaded):
            assert sandbox.state is SandboxState.CLOSED

    async def test_stats_report_memory(self, kit: Kit) -> None:
        async with await self._loaded(kit, "echo") as sandbox:
            await sandbox.invoke(Event("invoke", b"x"))
            stats = await sandbox.stats()
            assert stats.rss_bytes > 0
            assert stats.cpu_seconds >= 0

    async def test_one_failure_does_not_touch_another_sandbox(self, kit: Kit) -> None:
        async with await self._loaded(kit, "echo") as healthy:
            async with await self._loaded(kit, "crashes") as doomed:
                with pytest.raises(FunctionCrashed):
                    await doomed.invoke(Event("invoke", b"x"))
            assert (await healthy.invoke(Event("invoke", b"still here"))).body == b"still here"

    async def test_many_sandboxes_side_by_side(self, kit: Kit) -> None:
        sandboxes = [await self._loaded(kit, "echo") for _ in range(4)]
        try:
            results = await asyncio.gather(
                *(s.invoke(Event("invoke", str(i).encode())) for i, s in enumerate(sandboxes))
            )
            assert [r.body for r in results] == [str(i).encode() for i in range(4)]
        finally:
            for s in sandboxes:
                await s.aclose()
