"""Every exception nfaas raises on purpose, in one tree.

    NfaasError
    ├── InvalidRequest              bad input to the API or CLI (400)
    │   ├── EventTooLarge           an event over the configured size (413)
    │   ├── MethodNotAllowed        an HTTP method a route does not bind (405)
    │   ├── InvalidPolicy           an unknown keep-alive policy or a parameter out of range
    │   ├── InvalidVersionPolicy    version weights that do not sum to 100 or name no serving version
    │   ├── CallbackNotAllowed      a subscription callback URI the operator does not allow
    │   ├── CallbackTestFailed      a subscription callback that did not answer its test GET with 204
    │   └── TraceError              a malformed or truncated invocation trace (file + line)
    ├── Unauthenticated             no token, or an unknown one (401)
    ├── Forbidden                   a token that may not do this (403)
    ├── NotFound                    no such package, function, runtime, ... (404)
    ├── Conflict                    the request clashes with stored state (409)
    │   ├── DuplicatePackage        same application name and version onboarded twice
    │   ├── PackageInUse            deleting a package that still serves events
    │   └── BindingConflict         a port or route another function already holds
    ├── PackageError                a package refused at onboarding (422)
    │   ├── UnsafeArchive           traversal, links, bombs, too many entries
    │   ├── ManifestError           TOSCA.meta or manifest malformed, files missing or extra
    │   ├── IntegrityError          a hash that does not match
    │   ├── DescriptorError         a descriptor that fails validation (file + field path)
    │   ├── UnknownRuntime          a runtime the repository does not hold
    │   └── EbpfObjectMismatch      an eBPF object whose program or maps differ from its descriptor
    ├── Overloaded                  no instance free, queue full or wait too long (429/503)
    ├── InsufficientCapacity        the node cannot reserve what an instance asks (503)
    ├── SandboxError                something went wrong running a function
    │   ├── BackendUnavailable      this machine cannot run the backend (503)
    │   ├── SandboxStartError       a sandbox failed to prepare or load code (502)
    │   │   └── EbpfVerifierError   the kernel verifier refused an eBPF program (422; log in extra)
    │   └── FunctionFailure         the function itself failed an invocation
    │       ├── FunctionRaised      the handler raised (500)
    │       ├── FunctionCrashed     the sandbox died: exit, signal (502)
    │       ├── FunctionTimeout     over its time limit (504)
    │       └── FunctionOutOfMemory over its memory limit (502)
    ├── NetworkFunctionError        a packet-processing graph built or fed wrongly (nfaas.nf;
    │   │                           raised inside a function, so it never reaches the API)
    │   ├── GraphError              an operator graph that cannot run (bad branch, no output)
    │   └── CaptureError            a pcap file or packet socket that cannot be read or written
    └── ExperimentError             an experiment (``nfaas experiment``) that cannot run or measure

The HTTP status of each lives in one table, ``nfaas.api.problems``; handlers
never choose a status for an error themselves.
"""

from __future__ import annotations

from typing import Any


class NfaasError(Exception):
    """Base of every deliberate nfaas error; ``detail`` is for humans."""

    title = "nfaas error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.extra.items())
        return f"{type(self).__name__}({self.detail!r}{extra})"


class InvalidRequest(NfaasError):
    title = "Invalid request"


class EventTooLarge(InvalidRequest):
    title = "Event too large"


class MethodNotAllowed(InvalidRequest):
    title = "Method not allowed"


class InvalidPolicy(InvalidRequest):
    """A keep-alive policy that does not exist, or a parameter of one out of its range."""

    title = "Invalid keep-alive policy"


class InvalidVersionPolicy(InvalidRequest):
    """A version-mapping policy refused (EVE025 7.2.5); nothing was changed."""

    title = "Invalid version-mapping policy"


class CallbackNotAllowed(InvalidRequest):
    """A callback URI with a bad scheme, or a destination the operator's settings refuse."""

    title = "Callback URI not allowed"


class CallbackTestFailed(InvalidRequest):
    """The test GET of a new subscription's callback did not get 204 (as SOL003 4.5.3.3)."""

    title = "Callback test failed"


class TraceError(InvalidRequest):
    """An invocation trace that cannot be read; ``file`` and ``line`` (1-based) say where."""

    title = "Invalid trace"

    def __init__(self, detail: str, *, file: str, line: int | None = None) -> None:
        where = f"{file}, line {line}" if line is not None else file
        super().__init__(f"{where}: {detail}", file=file, line=line)
        self.file = file
        self.line = line


class Unauthenticated(NfaasError):
    title = "Authentication required"


class Forbidden(NfaasError):
    title = "Forbidden"


class NotFound(NfaasError):
    title = "Not found"


class Conflict(NfaasError):
    title = "Conflict"


class DuplicatePackage(Conflict):
    title = "Package already onboarded"


class PackageInUse(Conflict):
    title = "Package in use"


class BindingConflict(Conflict):
    title = "Trigger binding conflict"


class PackageError(NfaasError):
    title = "Package rejected"


class UnsafeArchive(PackageError):
    title = "Unsafe archive"


class ManifestError(PackageError):
    title = "Invalid package manifest"


class IntegrityError(PackageError):
    title = "Integrity check failed"


class DescriptorError(PackageError):
    """A descriptor failed validation; ``file`` and ``errors`` say where."""

    title = "Invalid descriptor"

    def __init__(
        self, detail: str, *, file: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(detail, file=file, errors=errors or [])
        self.file = file
        self.errors = errors or []


class UnknownRuntime(PackageError):
    title = "Unknown runtime"


class EbpfObjectMismatch(PackageError):
    """An eBPF object whose program or maps differ from what its descriptor declares."""

    title = "eBPF object does not match its descriptor"


class Overloaded(NfaasError):
    """No instance could take the event; ``reason`` is ``queue_full`` or ``queue_timeout``."""

    title = "Function overloaded"

    def __init__(self, detail: str, *, reason: str, retry_after: float = 1.0) -> None:
        super().__init__(detail, reason=reason)
        self.reason = reason
        self.retry_after = retry_after


class InsufficientCapacity(NfaasError):
    title = "Insufficient node capacity"


class SandboxError(NfaasError):
    title = "Sandbox error"


class BackendUnavailable(SandboxError):
    title = "Sandbox backend unavailable"


class SandboxStartError(SandboxError):
    title = "Function failed to start"


class EbpfVerifierError(SandboxStartError):
    """The kernel verifier refused a program; ``extra["verifier_log"]`` holds its whole log."""

    title = "eBPF program rejected by the kernel verifier"


class FunctionFailure(SandboxError):
    """The function failed one invocation; the instance may have to be replaced."""

    title = "Function failed"
    #: whether the sandbox is unusable after this failure
    fatal = True


class FunctionRaised(FunctionFailure):
    title = "Function raised an exception"
    fatal = False

    def __init__(self, detail: str, *, exc_type: str = "", traceback: str = "") -> None:
        super().__init__(detail, exc_type=exc_type)
        self.exc_type = exc_type
        self.traceback = traceback


class FunctionCrashed(FunctionFailure):
    title = "Function crashed"


class FunctionTimeout(FunctionFailure):
    title = "Function timed out"


class FunctionOutOfMemory(FunctionFailure):
    title = "Function exceeded its memory limit"


class NetworkFunctionError(NfaasError):
    """A network function (``nfaas.nf``) built or fed wrongly; raised inside the function."""

    title = "Network function error"


class GraphError(NetworkFunctionError):
    title = "Invalid operator graph"


class CaptureError(NetworkFunctionError):
    title = "Packet capture error"


class ExperimentError(NfaasError):
    """An experiment (``nfaas.experiments``) that cannot run, or whose measurement failed."""

    title = "Experiment error"
