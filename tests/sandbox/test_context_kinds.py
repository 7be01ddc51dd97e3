"""Non-text contexts cross to every sandbox as the same kind of object: bytes, a DataFrame or
Arrow table (Arrow IPC in the memfd), a Parquet file, a directory of files mounted read-only,
an image. Each test runs on bubblewrap, Landlock and the in-process sandbox (isolated layers
this machine lacks are skipped with the reason)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from fastrlm import ContextError

from .helpers import MakeSandbox

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")

pytestmark = pytest.mark.sandbox

LAYERS = ["bwrap", "landlock", "none"]
ISOLATED = ["bwrap", "landlock"]


async def run(sandbox: object, code: str) -> str:
    result = await sandbox.execute(code)  # type: ignore[attr-defined]
    assert result.error is None, result.error
    return str(result.stdout).strip()


@pytest.mark.parametrize("layer", LAYERS)
async def test_bytes_arrive_as_the_same_bytes(make_sandbox: MakeSandbox, layer: str) -> None:
    data = bytes(range(256)) * 100
    sb = await make_sandbox(layer, context=data)
    out = await run(sb, "import hashlib\nprint(type(context).__name__, "
                        "hashlib.sha256(context).hexdigest())")
    import hashlib

    assert out.split() == ["bytes", hashlib.sha256(data).hexdigest()]


def frame(rows: int) -> object:
    import numpy as np

    ids = np.arange(rows)
    return pd.DataFrame({
        "id": ids,
        "price": ids * 0.25,
        "city": np.array(["Oslo", "Lima", "Pune"], dtype=object)[ids % 3],
    })


DIGEST = ("import pandas as pd\n"
          "print(type(context).__name__, context.shape, list(context.columns),\n"
          "      [str(t) for t in context.dtypes], type(context.index).__name__,\n"
          "      int(pd.util.hash_pandas_object(context).sum()))")


def host_digest(df: object) -> str:
    d: object = df
    columns = list(d.columns)  # type: ignore[attr-defined]
    dtypes = [str(t) for t in d.dtypes]  # type: ignore[attr-defined]
    digest = int(pd.util.hash_pandas_object(d).sum())
    return (f"DataFrame {d.shape} {columns} {dtypes} "  # type: ignore[attr-defined]
            f"{type(d.index).__name__} {digest}")  # type: ignore[attr-defined]


@pytest.mark.parametrize("layer", ISOLATED)
async def test_a_million_row_dataframe_round_trips(make_sandbox: MakeSandbox, layer: str) -> None:
    df = frame(1_000_000)
    sb = await make_sandbox(layer, context=df)
    assert await run(sb, DIGEST) == host_digest(df)


async def test_a_dataframe_keeps_its_index_in_process(make_sandbox: MakeSandbox) -> None:
    df = frame(10).set_index("city")  # type: ignore[attr-defined]
    sb = await make_sandbox("bwrap", context=df)
    assert await run(sb, DIGEST) == host_digest(df)
    sb = await make_sandbox("none", context=df)
    assert await run(sb, DIGEST) == host_digest(df)


@pytest.mark.parametrize("layer", LAYERS)
async def test_an_arrow_table_stays_a_table(make_sandbox: MakeSandbox, layer: str) -> None:
    table = pa.table({"x": [1, 2, 3], "y": ["a", None, "c"]})
    sb = await make_sandbox(layer, context=table)
    out = await run(sb, "print(type(context).__name__, context.num_rows, context.column('y')"
                        ".to_pylist(), context.schema.field('x').type)")
    assert out == "Table 3 ['a', None, 'c'] int64"


@pytest.mark.parametrize("layer", LAYERS)
async def test_a_parquet_path_becomes_a_dataframe(
    make_sandbox: MakeSandbox, layer: str, tmp_path: Path
) -> None:
    df = frame(1000)
    path = tmp_path / "prices.parquet"
    df.to_parquet(path)  # type: ignore[attr-defined]
    sb = await make_sandbox(layer, context=path)
    out = await run(sb, "print(type(context).__name__, context.shape, "
                        "round(float(context.price.sum()), 2))")
    assert out == f"DataFrame (1000, 3) {round(sum(i * 0.25 for i in range(1000)), 2)}"


def make_tree(root: Path, files: int) -> None:
    for i in range(files):
        sub = root / f"d{i % 50:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.txt").write_text(f"file {i}\n")


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    make_tree(root, 10_000)
    (root / "blob.bin").write_bytes(b"\xff\xfe\x00")
    return root


@pytest.mark.slow  # creating 10,000 files takes 2-25 s on a loaded disk; reading them is fast
@pytest.mark.parametrize("layer", LAYERS)
async def test_a_directory_of_ten_thousand_files(
    make_sandbox: MakeSandbox, layer: str, big_tree: Path
) -> None:
    sb = await make_sandbox(layer, context=big_tree)
    out = await run(sb, "print(type(context).__name__, len(context), "
                        "context['d07/f00007.txt'].strip(), type(context['blob.bin']).__name__, "
                        "sum(len(context[k]) for k in context))")
    total = sum(len(f"file {i}\n") for i in range(10_000)) + 3
    assert out == f"FileTree 10001 file 7 bytes {total}"


@pytest.mark.parametrize("layer", ISOLATED)
async def test_the_context_directory_is_read_only_and_nothing_beside_it_is_reachable(
    make_sandbox: MakeSandbox, layer: str, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.txt").write_text("inside")
    (tmp_path / "secret.txt").write_text("outside")
    sb = await make_sandbox(layer, context=root)
    probes = {
        "overwrite": "open(context.path('a.txt'), 'w').write('x')",
        "create": "open(context.root + '/new.txt', 'w').write('x')",
        "mkdir": "import os; os.mkdir(context.root + '/sub')",
        "remove": "import os; os.remove(context.path('a.txt'))",
        "dotdot key": "context['../secret.txt']",
        "dotdot path": "open(context.root + '/../secret.txt').read()",
    }
    for name, code in probes.items():
        result = await sb.execute(code)
        assert result.error is not None, f"{name} succeeded on {layer}: {result.stdout}"
    assert (root / "a.txt").read_text() == "inside" and not (root / "new.txt").exists()
    assert await run(sb, "print(context['a.txt'])") == "inside"


@pytest.mark.parametrize("layer", LAYERS)
async def test_a_pil_image_can_be_cropped_in_the_sandbox(
    make_sandbox: MakeSandbox, layer: str
) -> None:
    image_module = pytest.importorskip("PIL.Image")
    image = image_module.new("RGB", (64, 32), (200, 10, 10))
    sb = await make_sandbox(layer, context=image)
    out = await run(sb, "from PIL import Image\ncrop = context.crop((0, 0, 8, 4))\n"
                        "print(isinstance(context, Image.Image), context.size, crop.size, "
                        "crop.getpixel((1, 1)))")
    assert out == "True (64, 32) (8, 4) (200, 10, 10)"


async def test_image_bytes_stay_bytes_and_open_with_pillow(make_sandbox: MakeSandbox) -> None:
    image_module = pytest.importorskip("PIL.Image")
    buffer = io.BytesIO()
    image_module.new("L", (5, 7)).save(buffer, format="PNG")
    sb = await make_sandbox("bwrap", context=buffer.getvalue())
    out = await run(sb, "import io\nfrom PIL import Image\n"
                        "print(type(context).__name__, Image.open(io.BytesIO(context)).size)")
    assert out == "bytes (5, 7)"


async def test_a_restarted_worker_gets_the_same_dataframe(make_sandbox: MakeSandbox) -> None:
    df = frame(1000)
    sb = await make_sandbox("bwrap", context=df)
    crashed = await sb.execute("import os\nos._exit(9)")
    assert crashed.restarted
    assert await run(sb, DIGEST) == host_digest(df)


async def test_a_missing_path_is_a_context_error(
    make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    with pytest.raises(ContextError, match="does not exist"):
        await make_sandbox("bwrap", context=tmp_path / "nope")
    with pytest.raises(ContextError, match="does not exist"):
        await make_sandbox("none", context=tmp_path / "nope")


@pytest.mark.parametrize("layer", ISOLATED)
async def test_a_single_file_path_is_a_one_entry_tree(
    make_sandbox: MakeSandbox, layer: str, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("just this file")
    (tmp_path / "other.txt").write_text("not this one")
    sb = await make_sandbox(layer, context=tmp_path / "notes.txt")
    assert await run(sb, "print(list(context), context['notes.txt'])") == (
        "['notes.txt'] just this file")
    result = await sb.execute("open(context.root + '/other.txt').read()")
    assert result.error is not None  # only the file itself is mounted


ALL_LAYERS = ["bwrap", "landlock", "process", "none"]


@pytest.mark.parametrize("layer", ALL_LAYERS)
async def test_a_directory_with_a_file_hard_linked_from_outside_is_refused(
    make_sandbox: MakeSandbox, layer: str, tmp_path: Path
) -> None:
    """The directory is mounted whole, so a hard link in it reads a file outside on every
    layer: such a directory is refused, naming the file and what to do."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.txt").write_text("inside")
    (tmp_path / "secret.txt").write_text("outside")
    os.link(tmp_path / "secret.txt", root / "leak.txt")
    with pytest.raises(ContextError, match=r"hard link outside it \(first: leak.txt, 2 links, "
                                           r"1 inside\).*cp -r"):
        await make_sandbox(layer, context=root)


@pytest.mark.parametrize("layer", ALL_LAYERS)
async def test_hard_links_within_the_directory_are_listed_as_files(
    make_sandbox: MakeSandbox, layer: str, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("same")
    os.link(root / "a.txt", root / "sub" / "b.txt")
    sb = await make_sandbox(layer, context=root)
    assert await run(sb, "print(sorted(context), context['sub/b.txt'])") == (
        "['a.txt', 'sub/b.txt'] same")


@pytest.mark.parametrize("layer", ALL_LAYERS)
async def test_fifos_and_directory_links_are_left_out_of_the_listing(
    make_sandbox: MakeSandbox, layer: str, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.txt").write_text("inside")
    os.mkfifo(root / "pipe")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.txt").write_text("outside")
    (root / "out").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    sb = await make_sandbox(layer, context=root)
    assert await run(sb, "print(list(context))") == "['a.txt']"


def test_a_fifo_swapped_in_for_a_listed_file_is_an_error_not_a_hang(tmp_path: Path) -> None:
    from fastrlm.sandbox.kinds import FileTree

    (tmp_path / "a.txt").write_text("inside")
    tree = FileTree(str(tmp_path), ["a.txt"])
    (tmp_path / "a.txt").unlink()
    os.mkfifo(tmp_path / "a.txt")
    with pytest.raises(OSError, match="no longer a regular file"):
        tree["a.txt"]


@pytest.fixture(scope="module", params=[300_000, 3_000_000], ids=["over-limit", "over-heap"])
def inflating_parquet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A small Parquet file (one value, dictionary-encoded) that decodes past a 64 MiB limit:
    to about 100 MB (the worker starts, then holds more than its limit) or 300 MB (past the
    heap backstop: MemoryError while it decodes)."""
    import pyarrow.parquet as pq

    path = tmp_path_factory.mktemp("parquet") / "inflates.parquet"
    pq.write_table(pa.table({"s": pa.array(["x" * 100] * request.param)}), path)
    return path


@pytest.mark.parametrize("layer", [*ISOLATED, "process", "auto"])
async def test_a_context_past_the_memory_limit_names_the_limit_and_the_flag_at_once(
    make_sandbox: MakeSandbox, layer: str, inflating_parquet: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # It reported "no sandbox layer could start" after trying every layer, each of which hit
    # the same limit (or, below the heap backstop, started a worker the watchdog stopped at
    # every cell).
    with pytest.raises(ContextError) as info:
        await make_sandbox(layer, context=inflating_parquet, memory_bytes=64 * 2**20)
    message = str(info.value)
    assert message.startswith("the context does not fit in the sandbox worker's memory limit "
                              "of 64 MiB (as set): the worker ")
    assert "rebuilding the context" in message
    assert "--worker-memory-mb N or Limits(worker_memory_mb=N)" in message
    assert "no sandbox layer could start" not in message
    assert not [r for r in caplog.records if "failed to start" in r.getMessage()]


async def test_a_run_whose_context_is_past_worker_memory_mb_is_a_context_error_stop(
    inflating_parquet: Path,
) -> None:
    # The whole path: Limits.worker_memory_mb -> the sandbox's limit -> the run's error.
    from fastrlm import RLM, Limits, SandboxUnavailableError
    from fastrlm.sandbox import _layers
    from fastrlm.testing import ScriptedLM

    try:
        _layers.plans_for("auto")
    except SandboxUnavailableError as exc:
        pytest.skip(str(exc))
    rlm = RLM(ScriptedLM(["```repl\nFINAL(len(context))\n```"]), sandbox="auto",
              limits=Limits(worker_memory_mb=64), trace=False)
    with pytest.raises(ContextError, match=r"memory limit of 64 MiB .*--worker-memory-mb") as info:
        await rlm.acompletion("how many rows?", context=inflating_parquet)
    assert info.value.result is not None and info.value.result.error_kind == "context"
