"""``nfaas microvm``: the microVM guest image and its snapshot, on this machine.

``build`` makes the guest image from the distribution's packages (what
``scripts/setup`` runs); ``show`` says what is built, which acceleration QEMU
would use and why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

microvm_app = typer.Typer(no_args_is_help=True, help="MicroVM guest images.")

OutOpt = Annotated[
    Path | None, typer.Option("--out", help="image folder (default: the machine-wide one)")
]


@microvm_app.command("build")
def build(
    out: OutOpt = None,
    force: Annotated[bool, typer.Option("--force", help="rebuild even if up to date")] = False,
) -> None:
    """Build the guest kernel and initramfs from the distribution's packages."""
    from nfaas.errors import NfaasError
    from nfaas.sandboxes.microvm.image import build_image, default_image_dir

    folder = out or default_image_dir()
    try:
        image = build_image(folder, force=force)
    except NfaasError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"microVM image in {image.folder}: kernel {image.manifest['kernel']}, "
               f"digest {image.digest[:12]}")  # fmt: skip


@microvm_app.command("show")
def show(out: OutOpt = None) -> None:
    """The built image's manifest and the acceleration QEMU would use."""
    from nfaas.errors import NfaasError
    from nfaas.sandboxes.microvm.image import default_image_dir, load_image
    from nfaas.sandboxes.microvm.qemu import choose_accelerator

    accelerator = choose_accelerator()
    typer.echo(f"acceleration: {accelerator.name} ({accelerator.why})")
    try:
        image = load_image(out or default_image_dir())
    except NfaasError as exc:
        typer.echo(f"image: {exc.detail}")
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(image.manifest, indent=2))
