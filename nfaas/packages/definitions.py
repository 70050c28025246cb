"""Descriptors in ``Definitions/``: YAML read safely, then validated by the models.

Every failure becomes a ``DescriptorError`` carrying the file's path in the
package and, for validation failures, the dotted path of each faulty field
(``scaling.instance_threshold``), so a provider can fix the package without
guessing (EVE025 5.2.6 step 1: onboarding checks the descriptors are usable).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from nfaas.errors import DescriptorError
from nfaas.packages.descriptors import ApplicationDescriptor, FunctionDescriptor

DescriptorKind = Literal["ServerlessApplication", "ServerlessFunction"]
KINDS: dict[str, type[ApplicationDescriptor | FunctionDescriptor]] = {
    "ServerlessApplication": ApplicationDescriptor,
    "ServerlessFunction": FunctionDescriptor,
}
#: a descriptor is a page of YAML; anything larger is a mistake or an attack
MAX_DESCRIPTOR_BYTES = 1024 * 1024
#: nesting levels of YAML collections; descriptors need fewer than ten
MAX_DEPTH = 64
_TRIGGER_TAGS = {"http", "udp", "tcp", "timer", "mqtt"}

M = TypeVar("M", bound=BaseModel)


class _DescriptorLoader(yaml.SafeLoader):
    """safe_load, minus aliases and duplicate keys.

    Aliases let a few lines expand into billions of nodes once validation
    walks them ("billion laughs"); duplicate keys are silently last-wins in
    PyYAML, which would hide a provider's mistake.
    """

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in descriptors", mark
            )
        # the composer recurses once per level: bound it before Python's stack does
        if self.depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_DEPTH} levels deep", mark
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: SafeConstructor reports it, with its position
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(data: bytes, file: str) -> dict[str, Any]:
    """The mapping a descriptor file holds; ``DescriptorError`` with the line if it is not one."""
    if len(data) > MAX_DESCRIPTOR_BYTES:
        raise DescriptorError(
            f"{file}: descriptor is {len(data)} bytes, over {MAX_DESCRIPTOR_BYTES}", file=file
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DescriptorError(f"{file}: not UTF-8 text ({exc})", file=file) from exc
    try:
        document = yaml.load(text, Loader=_DescriptorLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise DescriptorError(
            f"{file}{where}: invalid YAML: {problem}",
            file=file,
            errors=[{"loc": "", "msg": problem, "line": mark.line + 1 if mark else None}],
        ) from exc
    except yaml.YAMLError as exc:
        raise DescriptorError(f"{file}: invalid YAML: {exc}", file=file) from exc
    if not isinstance(document, dict):
        raise DescriptorError(
            f"{file}: a descriptor must be a YAML mapping, not {type(document).__name__}",
            file=file,
        )
    return document


def descriptor_kind(document: dict[str, Any], file: str) -> DescriptorKind:
    kind = document.get("kind")
    if kind == "ServerlessApplication":
        return "ServerlessApplication"
    if kind == "ServerlessFunction":
        return "ServerlessFunction"
    msg = f"kind must be ServerlessApplication or ServerlessFunction, not {kind!r}"
    raise DescriptorError(f"{file}: {msg}", file=file, errors=[{"loc": "kind", "msg": msg}])


def validate(model: type[M], document: dict[str, Any], file: str) -> M:
    """``model`` validated from ``document``; ``DescriptorError`` naming file and fields."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        errors = [_describe(error) for error in exc.errors(include_url=False)]
        listing = "; ".join(
            f"{e['loc']}: {e['msg']}" if e["loc"] else str(e["msg"]) for e in errors
        )
        raise DescriptorError(
            f"{file}: invalid {model.__name__}: {listing}", file=file, errors=errors
        ) from None


def load_descriptor(data: bytes, file: str) -> ApplicationDescriptor | FunctionDescriptor:
    """Parse and validate one descriptor file, whichever kind it declares."""
    document = load_yaml(data, file)
    return validate(KINDS[descriptor_kind(document, file)], document, file)


def field_error(file: str, loc: str, msg: str) -> DescriptorError:
    """A ``DescriptorError`` about one field, for checks the models cannot make alone."""
    return DescriptorError(f"{file}: {loc}: {msg}", file=file, errors=[{"loc": loc, "msg": msg}])


def _describe(error: ErrorDetails) -> dict[str, Any]:
    loc = list(error["loc"])
    # pydantic puts the discriminator's value in the path of a trigger
    # (triggers.0.udp.port); the provider wrote triggers[0].port
    if len(loc) > 2 and loc[0] == "triggers" and loc[2] in _TRIGGER_TAGS:
        del loc[2]
    msg = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if error["type"] in ("string_type", "literal_error") and is_number:
        msg += ' (quote numbers meant as text in YAML, e.g. version: "3.10")'
    return {"loc": ".".join(str(part) for part in loc), "msg": msg}
