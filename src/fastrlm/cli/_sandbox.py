"""``fastrlm sandbox build``: make the image the ``docker`` and ``podman`` sandbox layers run."""

from __future__ import annotations

import sys

import click

from ._exit import ExitCode


@click.group()
def sandbox() -> None:
    """Manage the container sandbox (docker, podman): build its image."""


@sandbox.command()
@click.option("--runtime", type=click.Choice(["docker", "podman"]), default="docker",
              show_default=True, help="The container runtime whose daemon builds and runs it.")
@click.option("--image", "name", default=None, metavar="NAME",
              help="The image's name [default: $FASTRLM_SANDBOX_IMAGE or fastrlm-sandbox:latest]; "
                   "the sandbox runs the image FASTRLM_SANDBOX_IMAGE names.")
@click.option("--base", default=None, metavar="IMAGE",
              help="Build on this image (it must hold a Python 3.10+; pulled if missing because "
                   "you named it), e.g. python:3.11-slim. Default: this host's own Python, "
                   "no registry involved (Linux only).")
@click.option("--python", default="python3", show_default=True,
              help="With --base: the interpreter in that image.")
@click.option("--with", "packages", multiple=True, metavar="PACKAGE",
              help="Put this host's installed PACKAGE (a distribution or a module name, e.g. "
                   "pandas) in the image, with what it requires; repeatable. Without it the "
                   "worker has the standard library only.")
def build(runtime: str, name: str | None, base: str | None, python: str,
          packages: tuple[str, ...]) -> None:
    """Build the container sandbox's image from this host's Python (or on --base IMAGE).

    The image holds an interpreter and its standard library, fastrlm's worker code, pyseccomp
    and libseccomp, and the packages named with --with; it is labelled with a digest of that
    code, and a sandbox refuses an image whose code is not this fastrlm's (build again after an
    upgrade). Your context never goes
    into it: each run streams the context into its container.
    """
    from .._foundation.errors import SandboxUnavailableError
    from ..sandbox import DEFAULT_IMAGE, build_image, image_name

    target = name or image_name()
    source = f"on {base}" if base else "from this host's Python"
    click.echo(f"building {target} with {runtime} {source} ...", err=True)
    try:
        info = build_image(runtime, target, base, python, packages)
    except SandboxUnavailableError as exc:
        click.echo(f"fastrlm sandbox build: {exc}", err=True)
        sys.exit(int(ExitCode.SANDBOX))
    click.echo(f"built {info.name} ({info.image_id.removeprefix('sha256:')[:12]}, "
               f"Python {info.python_version}"
               + (f"; {info.packages.replace(',', ', ')}" if info.packages else "")
               + f"); use it with --sandbox {runtime}"
               + ("" if target == DEFAULT_IMAGE
                  else f" and FASTRLM_SANDBOX_IMAGE={target}"))
