from __future__ import annotations

import json
from pathlib import Path

from nfaas.cli.client import resolve_target


def found(url: str | None, token: str | None, env: dict[str, str]) -> tuple[str, str | None]:
    target = resolve_target(url, token, env)
    return target.url, target.token


def test_flags_beat_environment_beat_config_beat_local_platform(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "client.json").write_text(json.dumps({"url": "http://local:1", "token": "local-token"}))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"url": "http://config:2", "token": "config-token"}))
    env = {"NFAAS_DATA_DIR": str(data), "HOME": str(tmp_path)}

    assert found(None, None, env) == (
        "http://local:1",
        "local-token",
    )
    env["NFAAS_CONFIG"] = str(config)
    assert found(None, None, env) == (
        "http://config:2",
        "config-token",
    )
    env |= {"NFAAS_URL": "http://env:3", "NFAAS_TOKEN": "env-token"}
    assert found(None, None, env) == (
        "http://env:3",
        "env-token",
    )
    assert found("http://flag:4", "flag-token", env) == (
        "http://flag:4",
        "flag-token",
    )
    # A token read from a file goes only to the platform that file names.
    bare = {"NFAAS_DATA_DIR": str(data), "HOME": str(tmp_path)}
    assert found("http://flag:4", None, bare) == ("http://flag:4", None)
    assert found("http://local:1", None, bare) == ("http://local:1", "local-token")


def test_no_configuration_at_all_means_the_default_local_address(tmp_path: Path) -> None:
    target = resolve_target(
        None, None, {"HOME": str(tmp_path), "NFAAS_DATA_DIR": str(tmp_path / "none")}
    )
    assert (target.url, target.token, target.source) == ("http://127.0.0.1:8080", None, "default")
