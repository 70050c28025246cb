from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nfaas.errors import FunctionCrashed, FunctionOutOfMemory
from nfaas.sandboxes.base import Event, FunctionCode, Limits
from nfaas.sandboxes.mock import MockBackend
from tests.sandboxes.contract import Kit, SandboxContract


def _raise(event: Event) -> bytes:
    raise ValueError("bad reading")


def _crash(event: Event) -> bytes:
    raise FunctionCrashed("worker exited with status 3")


def _hog(event: Event) -> bytes:
    raise FunctionOutOfMemory("over 16 MB")


async def _loop(event: Event) -> bytes:
    await asyncio.sleep(3600)
    return b""


class TestMockContract(SandboxContract):
    @pytest.fixture
    async def kit(self) -> AsyncIterator[Kit]:
        backend = MockBackend(
            {
                "echo": lambda e: e.body,
                "raises": _raise,
                "crashes": _crash,
                "loops": _loop,
                "hogs_memory": _hog,
            }
        )
        async with backend:
            yield Kit(
                backend,
                lambda b: FunctionCode(
                    "app", b.replace("_", "-"), "1", b, Path(os.devnull), Limits(timeout_s=0.2)
                ),
            )
