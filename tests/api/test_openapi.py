from __future__ import annotations

from pathlib import Path

from nfaas.api.openapi import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_published_openapi_document_is_current() -> None:
    assert DOC.read_text() == render(), "run: python -m nfaas.api.openapi docs/openapi.json"


def test_every_resource_of_issue_2_is_in_the_api() -> None:
    text = DOC.read_text()
    for path in (
        "/api/v1/vnf_packages", "/api/v1/vnf_packages/{package_id}/package_content", "/api/v1/onboard",
        "/api/v1/function_packages", "/api/v1/functions", "/api/v1/functions/{app}/{name}/versions",
        "/api/v1/runtimes", "/api/v1/pools/{pool_id}", "/api/v1/triggers", "/api/v1/instances",
        "/api/v1/metrics", "/api/v1/tokens", "/api/v1/node",
    ):  # fmt: skip
        assert f'"{path}"' in text, path
