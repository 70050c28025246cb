"""The serverless application and function descriptors (EVE025 7.2.4).

An application descriptor names the provider, the application, its version,
the runtime software it relies on (7.2.1) and the function descriptors it
references. A function descriptor carries what is specific to one function:
its code, runtime, handler, resources, triggers and the working parameters of
function management (instance threshold, concurrency, idle period, maximum
quick-start instance count, runtime pool; 7.2.2 and 7.2.3).

These models are the single source of the package format: the JSON Schema in
``docs/`` is generated from them and ``docs/package-format.md`` documents them.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nfaas.packages.ebpf_settings import C_IDENTIFIER, EbpfSettings

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$"
PYTHON_HANDLER = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
#: paths the platform itself serves; a custom route may not shadow them
RESERVED_ROUTE_PREFIXES = (
    "/api", "/fn", "/metrics", "/docs", "/openapi.json", "/healthz", "/dashboard",
)  # fmt: skip

Name = Annotated[str, Field(pattern=NAME_PATTERN, description="lower-case DNS label")]
Version = Annotated[str, Field(pattern=VERSION_PATTERN, description="version string, e.g. 1.2.0")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuntimeRef(_Model):
    """A runtime in the FaaS Runtime Software Repository (7.2.1), by name and version."""

    name: Name
    version: Version

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


class CodeSource(_Model):
    """Where the function's code is: a path inside the package, or a URL to download at onboarding."""

    path: str | None = Field(
        default=None, description="file or folder inside the package, under Files/"
    )
    url: str | None = Field(
        default=None, description="http(s) URL downloaded and stored at onboarding"
    )
    hash: str | None = Field(
        default=None,
        pattern=r"^(sha256|sha512):[0-9a-f]+$",
        description="required with url: algorithm:hex digest of the downloaded file",
    )

    @model_validator(mode="after")
    def _one_source(self) -> CodeSource:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of 'path' or 'url'")
        if self.url is not None:
            if not re.match(r"^https?://", self.url):
                raise ValueError("url must be http:// or https://")
            if self.hash is None:
                raise ValueError("a code url needs a 'hash' to check the download against")
        if self.path is not None and (self.path.startswith("/") or ".." in self.path.split("/")):
            raise ValueError("path must be relative to the package root, without '..'")
        if self.path is not None and not self.path.strip("/"):
            raise ValueError("path must name a file or folder inside the package")
        if self.hash is not None:
            # the pattern alone would accept a truncated digest, which can never match
            algorithm, _, digest = self.hash.partition(":")
            length = {"sha256": 64, "sha512": 128}[algorithm]
            if len(digest) != length:
                raise ValueError(f"a {algorithm} hash has {length} hex digits, not {len(digest)}")
        return self


class Resources(_Model):
    memory_mb: int = Field(
        default=128, ge=4, le=65536, description="memory limit and reservation per instance"
    )
    cpu: float = Field(
        default=0.1, gt=0, le=64, description="CPU share reserved per instance, in cores"
    )
    timeout_s: float = Field(
        default=10.0, gt=0, le=3600, description="wall-clock limit of one invocation"
    )


class KeepAlive(_Model):
    """A keep-alive policy (``nfaas.keepalive``) deciding idle deletion and pre-warming."""

    policy: str = Field(description="fixed, never, hybrid or forecast (docs/package-format.md)")
    scope: Literal["function", "application"] = Field(
        default="function", description="learn from this function's events, or its application's"
    )
    parameters: dict[str, float] = Field(
        default_factory=dict, description="the policy's parameters; omitted ones take defaults"
    )

    @model_validator(mode="after")
    def _known(self) -> KeepAlive:
        # Imported here: the registry loads a policy's module only when a descriptor names it.
        from nfaas.errors import InvalidPolicy
        from nfaas.keepalive.registry import make_policy

        try:
            make_policy(self.policy, self.parameters)
        except InvalidPolicy as exc:
            raise ValueError(exc.detail) from None
        return self


class Scaling(_Model):
    """Working parameters of function management (EVE025 7.2.2, 7.2.3; use cases #3, #4)."""

    instance_threshold: int = Field(default=4, ge=1, le=1024, description="most instances at once")
    concurrency: int = Field(
        default=1, ge=1, le=1024, description="events one instance handles at once"
    )
    idle_period_s: float = Field(
        default=60.0, gt=0, le=86400, description="idle time before an instance is deleted"
    )
    max_quick_start: int = Field(
        default=1, ge=0, le=1024, description="most instances taken from the runtime pool (7.2.3)"
    )
    pool: str | None = Field(
        default=None, description="runtime pool id; default: the runtime's default pool"
    )
    queue_size: int = Field(
        default=64, ge=0, le=100000, description="events that may wait for a free slot"
    )
    queue_timeout_s: float = Field(
        default=5.0, gt=0, le=600, description="longest wait for a free slot"
    )
    keepalive: KeepAlive | None = Field(
        default=None,
        description="policy for idle deletion and pre-warming; default: delete after idle_period_s",
    )
    affinity: Literal["none", "flow"] = Field(
        default="none",
        description=(
            "flow: every UDP or TCP event of one flow (peer address and port, trigger port) "
            "goes to the same instance, chosen by rendezvous hashing over the ready instances, "
            "and waits for a slot there; none: any instance with a free slot"
        ),
    )


class HttpTrigger(_Model):
    type: Literal["http"] = "http"
    path: str | None = Field(
        default=None, description="custom route served at the platform's root, e.g. /telemetry"
    )
    methods: list[str] = Field(default_factory=lambda: ["GET", "POST"])

    @field_validator("path")
    @classmethod
    def _path_ok(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not re.match(r"^/[A-Za-z0-9._~/-]*$", v):
            raise ValueError("path must start with '/' and use URL-safe characters")
        for prefix in RESERVED_ROUTE_PREFIXES:
            if v == prefix or v.startswith(prefix + "/"):
                raise ValueError(f"path may not be under the platform's reserved prefix {prefix}")
        return v

    @field_validator("methods")
    @classmethod
    def _methods_ok(cls, v: list[str]) -> list[str]:
        up = [m.upper() for m in v]
        bad = [m for m in up if m not in HTTP_METHODS]
        if bad or not up:
            raise ValueError(f"methods must be a non-empty subset of {', '.join(HTTP_METHODS)}")
        return up


class UdpTrigger(_Model):
    """EVE025 Fig. 7.2.2.2-2: datagrams arriving on a port trigger a function."""

    type: Literal["udp"] = "udp"
    port: int = Field(ge=1, le=65535)
    reply: bool = Field(default=True, description="send the function's result back as a datagram")


class TcpTrigger(_Model):
    type: Literal["tcp"] = "tcp"
    port: int = Field(ge=1, le=65535)
    framing: Literal["line", "stream"] = Field(
        default="line",
        description="line: one event per newline-terminated line; stream: one event per connection",
    )


class TimerTrigger(_Model):
    type: Literal["timer"] = "timer"
    interval_s: float = Field(gt=0, le=86400 * 7, description="period between ticks")


MQTT_BROKER = re.compile(r"^mqtt://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")


class MqttTrigger(_Model):
    """IoT paper, section 4: each message a broker delivers on the topic filters is an event."""

    type: Literal["mqtt"] = "mqtt"
    broker: str = Field(
        default="mqtt://127.0.0.1:1883", description="the broker, mqtt://host[:port] (1883 if none)"
    )
    topics: list[str] = Field(min_length=1, max_length=64, description="topic filters (+ and #)")
    qos: Literal[0, 1] = Field(
        default=1, description="0: at most once; 1: at least once, acknowledged after success"
    )
    publish: str | None = Field(
        default=None, description="topic the function's non-empty results are published to"
    )

    @field_validator("broker")
    @classmethod
    def _broker_ok(cls, v: str) -> str:
        if not MQTT_BROKER.match(v):
            raise ValueError("broker must be mqtt://host or mqtt://host:port")
        return v

    @field_validator("topics")
    @classmethod
    def _filters_ok(cls, v: list[str]) -> list[str]:
        for topic in v:
            levels = topic.split("/")
            if not topic or len(topic) > 256 or "\0" in topic:
                raise ValueError(f"not a topic filter: {topic!r}")
            if any(
                ("#" in lv and (lv != "#" or i != len(levels) - 1)) for i, lv in enumerate(levels)
            ):
                raise ValueError(f"'#' may only be a whole last level: {topic!r}")
            if any("+" in lv and lv != "+" for lv in levels):
                raise ValueError(f"'+' may only be a whole level: {topic!r}")
        return v

    @field_validator("publish")
    @classmethod
    def _publish_ok(cls, v: str | None) -> str | None:
        if v is not None and (not v or "+" in v or "#" in v or len(v) > 256):
            raise ValueError("publish is a topic name, without wildcards")
        return v

    def address(self) -> tuple[str, int]:
        """The broker's host and port."""
        rest = self.broker.removeprefix("mqtt://")
        if rest.startswith("["):  # an IPv6 address
            host, _, tail = rest[1:].partition("]")
            return host, int(tail.removeprefix(":") or 1883)
        host, _, port = rest.partition(":")
        return host, int(port or 1883)


Trigger = Annotated[
    HttpTrigger | UdpTrigger | TcpTrigger | TimerTrigger | MqttTrigger, Field(discriminator="type")
]


class ChainLink(_Model):
    """The next function of a chain: it gets this function's result as its event."""

    function: Name = Field(description="a function of the same application")
    when: Literal["nonempty", "always"] = Field(
        default="nonempty", description="nonempty: only when the result is not empty"
    )
    after: list[Literal["http", "udp", "tcp", "timer", "mqtt", "chain", "invoke"]] | None = Field(
        default=None,
        description="only the results of events of these trigger types go on (default: all)",
    )


class WasiRights(_Model):
    """WASI capabilities granted to a Wasm function; everything else is denied."""

    stdout: bool = Field(default=False, description="inherit the platform's stdout (logs)")
    stderr: bool = Field(default=True, description="inherit the platform's stderr (logs)")
    env: bool = Field(default=False, description="expose the descriptor's environment variables")
    preopens: dict[str, str] = Field(
        default_factory=dict,
        description="guest path -> package-relative folder, mounted read-only",
    )


class WasmSettings(_Model):
    fuel: int = Field(
        default=50_000_000, ge=1000, description="instructions-ish budget per invocation"
    )
    wasi: WasiRights = Field(default_factory=WasiRights)


class FunctionDescriptor(_Model):
    """A serverless function descriptor (EVE025 7.2.4, Gap #4.2)."""

    descriptor_version: Literal["1.0"] = "1.0"
    kind: Literal["ServerlessFunction"] = "ServerlessFunction"
    name: Name
    version: Version
    application: Name | None = Field(
        default=None, description="owning application; required in a standalone function package"
    )
    description: str = ""
    runtime: RuntimeRef
    handler: str = Field(
        min_length=1,
        max_length=200,
        description="python: 'module:function'; wasm: the exported function name",
    )
    code: CodeSource
    resources: Resources = Field(default_factory=Resources)
    scaling: Scaling = Field(default_factory=Scaling)
    triggers: list[Trigger] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)
    chain: list[ChainLink] = Field(
        default_factory=list,
        max_length=16,
        description="functions that get this function's result as their event (chaining)",
    )
    wasm: WasmSettings | None = None
    ebpf: EbpfSettings | None = Field(
        default=None, description="an eBPF VNF (runtime ebpf): program, hook, maps, needs"
    )

    @model_validator(mode="after")
    def _consistent(self) -> FunctionDescriptor:
        if self.scaling.max_quick_start > self.scaling.instance_threshold:
            raise ValueError("scaling.max_quick_start may not exceed scaling.instance_threshold")
        ports = [(t.type, t.port) for t in self.triggers if isinstance(t, UdpTrigger | TcpTrigger)]
        if len(ports) != len(set(ports)):
            raise ValueError("the same port is bound twice")
        for key in self.environment:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"environment variable name {key!r} is not valid")
        # refuse at onboarding what the python sandbox could only refuse at load
        if self.runtime.name == "python" and not PYTHON_HANDLER.match(self.handler):
            raise ValueError(f"a python handler is 'module:function', not {self.handler!r}")
        # EVE025 6.6.1: an eBPF VNF is attached to a hook, never invoked by a trigger;
        # its user-space half (5.6.1) is another function of the application
        if (self.runtime.name == "ebpf") != (self.ebpf is not None):
            raise ValueError("the ebpf runtime and the 'ebpf' section go together")
        if self.ebpf is not None:
            if self.triggers:
                raise ValueError("an eBPF function is attached to a hook; it takes no triggers")
            if not re.match(C_IDENTIFIER, self.handler):
                raise ValueError(f"an eBPF handler is the program's C name, not {self.handler!r}")
        return self


class FunctionRef(_Model):
    """A function descriptor referenced by an application descriptor."""

    name: Name
    descriptor: str = Field(description="path of the function descriptor inside the package")


class ApplicationDescriptor(_Model):
    """A serverless application descriptor (EVE025 7.2.4, Gap #4.1)."""

    descriptor_version: Literal["1.0"] = "1.0"
    kind: Literal["ServerlessApplication"] = "ServerlessApplication"
    name: Name
    version: Version
    provider: str = Field(min_length=1, max_length=200)
    description: str = ""
    runtimes: list[RuntimeRef] = Field(
        default_factory=list, description="runtime software the functions rely on (7.2.1)"
    )
    functions: list[FunctionRef] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> ApplicationDescriptor:
        names = [f.name for f in self.functions]
        if len(names) != len(set(names)):
            raise ValueError("function names must be unique within an application")
        return self


def json_schemas() -> dict[str, object]:
    """The published JSON Schemas of both descriptors, keyed by kind."""
    return {
        "ServerlessApplication": ApplicationDescriptor.model_json_schema(),
        "ServerlessFunction": FunctionDescriptor.model_json_schema(),
    }
