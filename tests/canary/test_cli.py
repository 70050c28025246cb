"""``nfaas canary``, ``promote``, ``rollback``, ``policy`` and ``subscriptions`` against a server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from nfaas.cli.main import app
from tests.canary.kit import running_kit, serving
from tests.subscriptions.receiver import receiving

runner = CliRunner()


async def test_the_canary_commands_drive_the_policy(tmp_path: Path) -> None:
    async with running_kit(tmp_path, allow_private_callback_urls=True) as kit:
        await kit.onboard("1.0.0", "v1")
        acme = kit.tenant("acme")
        token = acme["Authorization"].removeprefix("Bearer ")
        await kit.http.put("/api/v1/functions/demo/fn/policy", json={"weights": {"1.0.0": 100}},
                           headers=acme)  # fmt: skip
        await kit.onboard("2.0.0", "v2")
        async with serving(kit.platform) as url, receiving() as rx:

            def nfaas(*args: str) -> tuple[int, str]:
                result = runner.invoke(app, [*args, "--url", url, "--token", token])
                return result.exit_code, result.output

            async def run(*args: str) -> tuple[int, str]:
                # in a thread: the server answering it runs on this event loop
                return await asyncio.to_thread(nfaas, *args)

            code, output = await run("canary", "demo/fn", "2.0.0=20", "--sticky", "header:x-dev",
                                     "--json")  # fmt: skip
            assert code == 0, output
            policy = json.loads(output)
            assert policy["weights"] == {"1.0.0": 80, "2.0.0": 20}
            assert policy["sticky"] == {"source": "header", "name": "x-dev"}
            code, output = await run("canary", "demo/fn", "2.0.0=20", "1.0.0=70")
            assert code == 1 and "weights must sum to 100, not 90" in output
            code, output = await run("canary", "demo/fn", "3.0.0=20")
            assert code == 1 and "no serving version 3.0.0" in output
            code, output = await run("promote", "demo/fn")
            assert code == 0 and "2.0.0" in output and "100%" in output and "stable" in output
            code, output = await run("rollback", "demo/fn", "--reason", "slow")
            assert code == 0 and "last rollback (manual): to 1.0.0: slow" in output
            code, output = await run("policy", "demo/fn", "--json")
            assert json.loads(output)["weights"] == {"1.0.0": 100}
            code, output = await run("subscriptions", "add", rx.url, "--type", "VersionRollback")
            assert code == 0 and "ACTIVE" in output, output
            code, output = await run("subscriptions", "--json")
            (sub,) = json.loads(output)
            assert sub["filter"] == {"notificationTypes": ["VersionRollback"]}
            code, output = await run("subscriptions", "rm", sub["id"])
            assert code == 0 and json.loads((await run("subscriptions", "--json"))[1]) == []
            code, output = await run("canary", "nonsense", "2.0.0=20")
            assert code == 1 and "app/function" in output
