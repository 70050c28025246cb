"""What function management and onboarding report, as lifecycle events."""

from __future__ import annotations

from collections.abc import Callable

from nfaas.catalog.records import PackageRecord
from nfaas.lifecycle.instances import FunctionInstance
from nfaas.notifications.events import EventLog


def instance_events(events: EventLog) -> Callable[[str, FunctionInstance], None]:
    """A ``FunctionManager.subscribe`` listener: instances created and deleted (and why)."""

    def changed(kind: str, instance: FunctionInstance) -> None:
        v = instance.version
        created = kind == "created"
        events.emit(
            "InstanceCreated" if created else "InstanceDeleted", v.tenant,
            app=v.app, function=v.name, version=v.version, instanceId=instance.id,
            backend=v.backend, fromPool=instance.from_pool,
            initMs=round(instance.init_seconds * 1000, 3),
            reason=None if created else kind.partition(":")[2],
        )  # fmt: skip

    return changed


def package_events(events: EventLog) -> Callable[[PackageRecord], None]:
    """An ``Onboarding`` observer: a package ONBOARDED, or refused (ERROR) with the reason."""

    def settled(record: PackageRecord) -> None:
        ok = record.onboarding_state == "ONBOARDED"
        events.emit(
            "PackageOnboarded" if ok else "PackageOnboardingFailed", record.tenant,
            app=record.app, version=record.version, packageId=record.id,
            functions=record.functions, error=record.error,
        )  # fmt: skip

    return settled
