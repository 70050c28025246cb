"""Which binding keeps a port or route that several bindings claim.

Onboarding refuses a package whose bindings clash with another application's
(``TriggerService.check``), but a clash can still reach the trigger service: an
application disabled while another took its port, then enabled again. The
service then decides deterministically, never by the order of a dict: the
application that holds the port now keeps it; when nobody holds it, the first
claimant in the order the bindings were given keeps it. Every other claimant is
refused with a message naming the holder ("udp port 9001 is bound to
app-a/fn").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nfaas.triggers.base import TriggerBinding

Key = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Clash:
    """``binding`` was refused because ``holder`` keeps the same port or route."""

    binding: TriggerBinding
    holder: TriggerBinding

    @property
    def message(self) -> str:
        return f"{self.binding.describe()} is bound to {self.holder.owner}"

    def __repr__(self) -> str:
        return f"Clash({self.binding.owner}: {self.message})"


@dataclass(frozen=True, slots=True)
class Resolution:
    #: the binding that holds each exclusive key
    holders: dict[Key, TriggerBinding]
    #: refused bindings, by their position in the list given to ``resolve``
    refused: dict[int, Clash]


def resolve(
    bindings: Sequence[TriggerBinding], held: Mapping[Key, tuple[str, str]] | None = None
) -> Resolution:
    """Pick one holder per exclusive key; ``held`` maps a key to its (app, function) now."""
    claims: dict[Key, list[tuple[int, TriggerBinding]]] = {}
    for position, binding in enumerate(bindings):
        if binding.exclusive:
            claims.setdefault(binding.key, []).append((position, binding))
    holders: dict[Key, TriggerBinding] = {}
    refused: dict[int, Clash] = {}
    for key, claimants in claims.items():
        position, holder = _first_claimant(claimants, (held or {}).get(key))
        holders[key] = holder
        for other, binding in claimants:
            if other != position:
                refused[other] = Clash(binding, holder)
    return Resolution(holders, refused)


def _first_claimant(
    claimants: list[tuple[int, TriggerBinding]], held_by: tuple[str, str] | None
) -> tuple[int, TriggerBinding]:
    if held_by is not None:
        # The same function first, then another function of the same application.
        for wanted in (
            lambda b: (b.app, b.function) == held_by,
            lambda b: b.app == held_by[0],
        ):
            for position, binding in claimants:
                if wanted(binding):
                    return position, binding
    return claimants[0]


def clashes_within(bindings: Iterable[TriggerBinding]) -> list[Clash]:
    """Bindings of one package that claim what an earlier binding of it claims."""
    first: dict[Key, TriggerBinding] = {}
    out = []
    for binding in bindings:
        if not binding.exclusive:
            continue
        holder = first.setdefault(binding.key, binding)
        if holder is not binding:
            out.append(Clash(binding, holder))
    return out
