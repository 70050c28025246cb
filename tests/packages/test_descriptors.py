"""The rules descriptors.py adds beyond field types (the rest is exercised by test_csar)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from nfaas.packages.descriptors import CodeSource, FunctionDescriptor, HttpTrigger


def _function(**changes: Any) -> FunctionDescriptor:
    base: dict[str, Any] = {
        "name": "f",
        "version": "1.0.0",
        "runtime": {"name": "python", "version": "3.11"},
        "handler": "main:handle",
        "code": {"path": "Files/f"},
    }
    return FunctionDescriptor.model_validate(base | changes)


def test_defaults() -> None:
    fn = _function()
    assert fn.scaling.instance_threshold == 4
    assert fn.resources.memory_mb == 128
    assert fn.triggers == []


@pytest.mark.parametrize("handler", ["main:handle", "pkg.mod:handle_event", "_m:_f"])
def test_python_handlers_accepted(handler: str) -> None:
    assert _function(handler=handler).handler == handler


@pytest.mark.parametrize("handler", ["handle", "main:", ":handle", "main:handle()", "a-b:c"])
def test_python_handler_must_be_module_colon_function(handler: str) -> None:
    with pytest.raises(ValidationError, match="a python handler is 'module:function'"):
        _function(handler=handler)


def test_wasm_handler_is_an_export_name() -> None:
    assert (
        _function(runtime={"name": "wasm", "version": "1"}, handler="classify").handler
        == "classify"
    )


def test_code_hash_must_have_the_algorithm_length() -> None:
    with pytest.raises(ValidationError, match="a sha256 hash has 64 hex digits, not 3"):
        CodeSource(url="https://x.example/a", hash="sha256:abc")
    assert CodeSource(url="https://x.example/a", hash="sha512:" + "a" * 128).hash


@pytest.mark.parametrize("path", ["", "/", "/etc", "Files/../x"])
def test_code_path_must_be_inside_the_package(path: str) -> None:
    with pytest.raises(ValidationError, match="path must"):
        CodeSource(path=path)


def test_reserved_routes_refused() -> None:
    with pytest.raises(ValidationError, match="reserved prefix /fn"):
        HttpTrigger(path="/fn/mine")
