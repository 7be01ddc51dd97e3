"""The container layer's image (``fastrlm sandbox build``): made locally, from this host's
own Python or on an image the user names, and labelled so that :func:`._container.ready_image`
can check it holds this host's worker code.

From this host's Python (Linux only), a root file system is written as a tar and loaded with
``<runtime> import`` (no registry, no builder): the interpreter at its own path, its standard
library (the pure-Python part zipped), the shared libraries they link, the loader's cache, and
under :data:`~._container.IMAGE_ROOT` fastrlm's worker code, ``pyseccomp`` and ``libseccomp``,
plus the host's installed packages the user asks for (``--with``). On ``--base IMAGE`` the same
files are copied into a container of that image and committed.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import importlib.metadata
import importlib.util
import io
import marshal
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile

from .._foundation.errors import SandboxUnavailableError
from . import _container
from ._container import (
    CODE_LABEL,
    DEFAULT_IMAGE,
    IMAGE_LIB,
    IMAGE_PACKAGE,
    IMAGE_ROOT,
    IMAGE_SITE,
    PACKAGES_LABEL,
    PYTHON_LABEL,
    USER,
    VERSION_LABEL,
    ImageInfo,
    _cli,
    _last_line,
    _worker_files,
)

# Standard-library directories a worker never imports: left out of the host-built image.
_STDLIB_SKIP = frozenset({
    "test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages",
    "dist-packages", "config-3.11-x86_64-linux-gnu", "pydoc_data", "__phello__",
})  # fmt: skip


def seccomp_files() -> tuple[str, str]:
    """The host's ``pyseccomp.py`` and ``libseccomp`` (resolved), copied into every image.
    Raises :class:`SandboxUnavailableError` when either is missing."""
    spec = importlib.util.find_spec("pyseccomp")
    soname = ctypes.util.find_library("seccomp")
    library = _resolve_library(soname) if soname else None
    if spec is None or not spec.origin or library is None:
        raise SandboxUnavailableError(
            "the sandbox image needs pyseccomp and libseccomp on this host "
            "(pip install pyseccomp; apt-get install libseccomp2)")
    return spec.origin, library


def _resolve_library(soname: str) -> str | None:
    """The path of a shared library by soname (the first ``ldconfig -p`` lists)."""
    try:
        listed = subprocess.run(["ldconfig", "-p"], capture_output=True, timeout=30,
                                check=False, env={"PATH": "/usr/sbin:/sbin:/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in listed.stdout.decode("utf-8", "replace").splitlines():
        if line.strip().startswith(soname + " ") and "=>" in line:
            return line.rpartition("=>")[2].strip()
    return None


def _linked_libraries(binaries: list[str]) -> set[str]:
    """Every shared library the binaries link (``ldd``), the dynamic loader included."""
    found: set[str] = set()
    for chunk in range(0, len(binaries), 64):
        done = subprocess.run(["ldd", *binaries[chunk:chunk + 64]], capture_output=True,
                              timeout=120, check=False)
        for line in done.stdout.decode("utf-8", "replace").splitlines():
            match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if match:
                found.add(match.group(1))
    return found


def _add_file(tar: tarfile.TarFile, source: str, target: str, mode: int | None = None) -> None:
    info = tar.gettarinfo(os.path.realpath(source), arcname=target.lstrip("/"))
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if mode is not None:
        info.mode = mode
    with open(os.path.realpath(source), "rb") as f:
        tar.addfile(info, f)


def _add_dir(tar: tarfile.TarFile, target: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(target.lstrip("/"))
    info.type = tarfile.DIRTYPE
    info.mode = mode
    tar.addfile(info)


def _add_code(tar: tarfile.TarFile) -> None:
    """fastrlm's worker code, ``pyseccomp`` and ``libseccomp`` under :data:`IMAGE_ROOT`."""
    pyseccomp, library = seccomp_files()
    for directory in (os.path.dirname(IMAGE_ROOT), IMAGE_ROOT, IMAGE_PACKAGE, IMAGE_LIB):
        _add_dir(tar, directory)
    made = set()
    for rel, path in _worker_files():
        parent = os.path.dirname(rel)
        while parent and parent not in made:
            made.add(parent)
            _add_dir(tar, f"{IMAGE_PACKAGE}/{parent}")
            parent = os.path.dirname(parent)
        _add_file(tar, path, f"{IMAGE_PACKAGE}/{rel}", 0o644)
    _add_file(tar, pyseccomp, f"{IMAGE_LIB}/pyseccomp.py", 0o644)
    _add_file(tar, library, f"{IMAGE_LIB}/libseccomp.so.2", 0o644)


def _distribution(name: str) -> importlib.metadata.Distribution:
    """The installed distribution ``name`` names: a distribution (``python-dateutil``) or a
    module it provides (``dateutil``). Raises :class:`SandboxUnavailableError` when neither."""
    try:
        return importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        pass
    providers = importlib.metadata.packages_distributions().get(name, [])
    if providers:
        return importlib.metadata.distribution(providers[0])
    raise SandboxUnavailableError(
        f"--with {name}: no package or module of that name is installed for this Python "
        f"({sys.executable}): pip install it here first, or leave it out")


def _required(dist: importlib.metadata.Distribution) -> list[str]:
    """The names of what ``dist`` requires on this platform (its extras left out)."""
    names = []
    for line in dist.requires or []:
        requirement, _, marker = line.partition(";")
        if not marker.strip() or _marker_holds(marker):
            names.append(re.split(r"[\s<>=!~\[(]", requirement.strip(), maxsplit=1)[0])
    return names


def _marker_holds(marker: str) -> bool:
    """Whether a requirement's environment marker holds here, no extra asked for (where
    ``packaging`` is missing: every marker that names no extra)."""
    try:
        from packaging.markers import Marker
    except ImportError:
        return "extra" not in marker
    return Marker(marker).evaluate({"extra": ""})


def package_files(names: tuple[str, ...]) -> tuple[list[tuple[str, str]], list[str]]:
    """The files of the installed distributions ``names`` name, and of everything they
    require (installed here; extras and other platforms' requirements left out): (host path,
    path relative to ``site-packages``) each, sorted, with the cached bytecode beside each
    module; and ``name==version`` of each distribution. Scripts and data installed outside
    ``site-packages`` are left out. Raises :class:`SandboxUnavailableError` for a name that is
    not installed."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    wanted = [(name, True) for name in names]
    while wanted:
        name, asked = wanted.pop()
        try:
            dist = _distribution(name)
        except SandboxUnavailableError:
            if asked:
                raise
            continue  # a requirement not installed here is not needed here
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen[key] = dist
        wanted += [(required, False) for required in _required(dist)]
    files: dict[str, str] = {}
    for dist in seen.values():
        for entry in dist.files or []:
            rel = os.path.normpath(str(entry))
            parts = rel.split(os.sep)
            # a package's own test suite (pandas': a fifth of it) is never imported by a worker
            if rel.startswith("..") or os.path.isabs(rel) or "__pycache__" in parts or (
                    "tests" in parts[1:-1]):
                continue
            path = str(dist.locate_file(entry))
            if not os.path.isfile(path):
                continue
            files[rel] = path
            if rel.endswith(".py"):
                cached = importlib.util.cache_from_source(path)
                if os.path.isfile(cached):  # no compiling on each start: the root is read-only
                    cached_rel = os.path.join(os.path.dirname(rel), "__pycache__",
                                              os.path.basename(cached))
                    files[cached_rel] = cached
    versions = sorted(f"{d.metadata['Name']}=={d.version}" for d in seen.values())
    return sorted((path, rel) for rel, path in files.items()), versions


def _stdlib_zip(stdlib: str) -> bytes:
    """The pure-Python standard library as one zip (the ``pythonXY.zip`` CPython puts first on
    ``sys.path``), each module with its bytecode (an unchecked hash-based ``.pyc``): a few files
    instead of thousands, which a storage driver that copies an image per container (``vfs``)
    copies in a tenth of the time."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for directory, subdirs, files in os.walk(stdlib):
            subdirs[:] = sorted(d for d in subdirs if d not in _STDLIB_SKIP
                                and d not in ("lib-dynload", "__pycache__"))
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(directory, name)
                rel = os.path.relpath(path, stdlib)
                with open(path, "rb") as f:
                    source = f.read()
                archive.writestr(rel, source)
                try:
                    code = compile(source, path, "exec", dont_inherit=True)
                except SyntaxError:  # lib2to3-style test data: left as source
                    continue
                pyc = (importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little")
                       + importlib.util.source_hash(source) + marshal.dumps(code))
                archive.writestr(rel[:-3] + ".pyc", pyc)
    return buffer.getvalue()


def host_rootfs(out: io.BufferedIOBase,
                packages: list[tuple[str, str]] | None = None) -> tuple[str, str]:
    """Write a tar of a minimal root file system to ``out``: this interpreter at its own path,
    its standard library (tests, IDLE and Tk left out; the pure-Python part zipped), the
    ``packages`` files (from :func:`package_files`) under :data:`IMAGE_SITE`, the shared
    libraries all of these link, the loader's cache, an empty ``/tmp``, and the worker's code.
    Returns (interpreter, version)."""
    from ._layers import interpreter

    python = interpreter()
    stdlib = sysconfig.get_paths()["stdlib"]
    dynload = os.path.join(stdlib, "lib-dynload")
    version = ".".join(map(str, sys.version_info[:3]))
    zipped = os.path.join(os.path.dirname(stdlib),
                          "python{}{}.zip".format(*sys.version_info[:2]))
    with tarfile.open(fileobj=out, mode="w|") as tar:
        made: set[str] = set()

        def dirs_for(path: str) -> None:
            parent = os.path.dirname(path)
            chain = []
            while parent not in ("/", "") and parent not in made:
                chain.append(parent)
                parent = os.path.dirname(parent)
            for directory in reversed(chain):
                made.add(directory)
                _add_dir(tar, directory)

        for directory in ("/tmp", "/etc"):
            made.add(directory)
            _add_dir(tar, directory, 0o1777 if directory == "/tmp" else 0o755)
        binaries = [os.path.realpath(python)]
        dirs_for(python)
        _add_file(tar, python, python, 0o755)
        dirs_for(os.path.join(dynload, "x"))
        for name in sorted(os.listdir(dynload)):
            # no Tk (nor its X11 libraries) without a display
            if name.endswith(".so") and not name.startswith("_tk"):
                path = os.path.join(dynload, name)
                _add_file(tar, path, path)
                binaries.append(path)
        _add_code(tar)  # before the packages: it makes the directories they go under
        made.update((os.path.dirname(IMAGE_ROOT), IMAGE_ROOT))
        sites = set()
        for path, rel in packages or []:
            target = f"{IMAGE_SITE}/{rel}"
            dirs_for(target)
            _add_file(tar, path, target)
            sites.add(os.path.realpath(path)[: -len(rel)])
            if ".so" in os.path.basename(rel):
                binaries.append(path)
        data = _stdlib_zip(stdlib)
        info = tarfile.TarInfo(zipped.lstrip("/"))
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
        for library in sorted(_linked_libraries(binaries)):
            # a wheel's bundled libraries (numpy.libs/...) are in the image already, found
            # beside the module that links them
            if os.path.exists(library) and not library.startswith((stdlib, *sites)):
                dirs_for(library)
                _add_file(tar, library, library, 0o755)
        if os.path.exists("/etc/ld.so.cache"):
            _add_file(tar, "/etc/ld.so.cache", "/etc/ld.so.cache", 0o644)
    return python, version


def _labels(python: str, version: str, packages: list[str] | None = None) -> dict[str, str]:
    labels = {PYTHON_LABEL: python, VERSION_LABEL: version,
              CODE_LABEL: _container.worker_code_digest()}
    if packages:
        labels[PACKAGES_LABEL] = ",".join(packages)
    return labels


def build_image(runtime: str, name: str = DEFAULT_IMAGE, base: str | None = None,
                python: str = "python3", packages: tuple[str, ...] = ()) -> ImageInfo:
    """Build the sandbox image ``name``: from this host's Python (Linux only; no registry), with
    the host's installed ``packages`` and what they require, or on ``base`` (an image the user
    named: pulled if missing) with its ``python``. Raises :class:`SandboxUnavailableError`
    saying what failed."""
    if packages and base is not None:
        raise SandboxUnavailableError(
            "--with copies this host's packages, built for this host's Python; with --base "
            "install them in the base image instead (pip install in it, then --base it)")
    version = _container.server_version(runtime)
    if isinstance(version, tuple):
        raise SandboxUnavailableError(version[0])
    if base is None:
        if not sys.platform.startswith("linux"):
            raise SandboxUnavailableError(
                f"building from this host's Python needs Linux (this is {sys.platform}): "
                "name a base image with a Python, e.g. --base python:3.11-slim")
        files, versions = package_files(packages)
        with tempfile.TemporaryFile() as tar:
            interpreter, py_version = host_rootfs(tar, files)
            tar.seek(0)
            labels = _labels(interpreter, py_version, versions)
            changes = [f"LABEL {k}={v}" for k, v in labels.items()]
            changes += [f"USER {USER}", "WORKDIR /tmp"]
            args = ["import"] + [x for c in changes for x in ("--change", c)] + ["-", name]
            done = _cli(runtime, *args, stdin=tar.read(), timeout=600.0)
        if done.returncode != 0:
            raise SandboxUnavailableError(f"{runtime} import failed: {_last_line(done.stderr)}")
    else:
        _build_on_base(runtime, name, base, python)
    _container.ready_image.cache_clear()
    info = _container.inspect_image(runtime, name)
    if isinstance(info, str):
        raise SandboxUnavailableError(info)
    return info


def _build_on_base(runtime: str, name: str, base: str, python: str) -> None:
    """``create`` a container of ``base``, copy the worker's code in, ``commit`` it as ``name``
    with the labels (no Dockerfile, no builder needed)."""
    probe = _cli(runtime, "run", "--rm", "--network", "none", "--entrypoint", python, base,
                 "-c", "import sys; print(sys.executable, '%d.%d.%d' % sys.version_info[:3])",
                 timeout=600.0)
    if probe.returncode != 0:
        raise SandboxUnavailableError(
            f"cannot run {python} in image {base}: {_last_line(probe.stderr)}")
    interpreter, _, py_version = probe.stdout.decode().strip().partition(" ")
    created = _cli(runtime, "create", "--network", "none", "--entrypoint", python, base,
                   "-c", "pass")
    if created.returncode != 0:
        raise SandboxUnavailableError(f"cannot create a container of {base}: "
                                      f"{_last_line(created.stderr)}")
    container = created.stdout.decode().strip()
    try:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w|") as tar:
            _add_code(tar)
        copied = _cli(runtime, "cp", "-", f"{container}:/", stdin=buffer.getvalue())
        if copied.returncode != 0:
            raise SandboxUnavailableError(f"cannot copy the worker code into {base}: "
                                          f"{_last_line(copied.stderr)}")
        changes = [f"LABEL {k}={v}" for k, v in _labels(interpreter, py_version).items()]
        changes += [f"USER {USER}", "WORKDIR /tmp"]
        args = ["commit"] + [x for c in changes for x in ("--change", c)] + [container, name]
        committed = _cli(runtime, *args, timeout=600.0)
        if committed.returncode != 0:
            raise SandboxUnavailableError(f"cannot commit {name}: {_last_line(committed.stderr)}")
    finally:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            _cli(runtime, "rm", "-f", container)
