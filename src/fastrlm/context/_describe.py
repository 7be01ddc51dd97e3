"""What the root model is told about a context that is not text or JSON: bytes (an image's
MIME type and size), an image, a DataFrame or Table (shape, columns, dtypes, first rows), a
Parquet file (its schema), a file tree (its listing with sizes). Host side only; the kinds
themselves are :mod:`fastrlm.sandbox.kinds`."""

from __future__ import annotations

import os
import re
from typing import Any

from ..sandbox import kinds

LISTED_FILES = 200
HEAD_ROWS = 5
DESCRIBED_COLUMNS = 60
#: Characters of a text input shown in a named-inputs description.
NAMED_HEAD_CHARS = 200
#: Names of a dict of named inputs listed in its description (a dict of ten thousand short
#: documents keyed ``doc1``... was a prompt of megabytes); the rest are counted.
NAMED_LISTED = 100
#: Inputs of a dict of named inputs described one by one; the rest are counted with their size.
NAMED_DESCRIBED = 20
#: ``context`` as code in a description (``context.crop(``, ``context['a']``, `` `context` ``):
#: an input's own name in the description of a named input.
_CODE_CONTEXT = re.compile(r"(?<![\w-])context(?=[.\[(`)\]])")


def describe(context: object) -> tuple[str, str, int]:
    """(type name, the lines the root model is told, size in bytes) of a rich context. Raises
    :class:`~fastrlm.sandbox.kinds.KindError` as ``kinds.encode`` does."""
    if isinstance(context, (bytes, bytearray, memoryview)):
        return "bytes", _describe_bytes(bytes(context[:64]), len(context), context), len(context)
    if kinds.is_pil_image(context):
        image: Any = context
        fmt = getattr(image, "format", None) or "PNG"
        text = (
            f"Your context is an image: {image.size[0]}x{image.size[1]} pixels, mode "
            f"{image.mode}, sent as {fmt}. In the REPL `context` is a PIL.Image.Image when "
            "Pillow imports there (crop with context.crop((left, top, right, bottom))), else "
            "its encoded bytes. Look at it, or at crops of it, through a vision sub-model: "
            "llm_query(prompt, images=[context])."
        )
        return "image", text, 0
    if kinds.is_dataframe(context):
        frame: Any = context
        return "DataFrame", _describe_dataframe(frame), int(frame.memory_usage(deep=False).sum())
    if kinds.is_arrow_table(context):
        table: Any = context
        return "Table", _describe_table(table, table.num_rows), int(table.nbytes)
    if kinds.is_path(context):
        encoded = kinds.encode_path(context)
        if encoded.kind == kinds.KIND_PARQUET:
            return encoded.meta["type"], _describe_parquet(encoded.meta), os.path.getsize(
                encoded.meta["path"])
        return "files", *_describe_files(encoded.meta["root"], encoded.meta["files"])
    raise kinds.KindError(f"not a rich context: {type(context).__name__}")


def describe_named(context: dict[str, object]) -> tuple[str, int]:
    """(the lines the root model is told, size in bytes) of a dict of named inputs: their
    names, and each input as it would be described alone, under its own name. Bounded
    however many inputs there are: the first :data:`NAMED_LISTED` names are listed and the
    first :data:`NAMED_DESCRIBED` inputs described; the rest are counted."""
    names = ", ".join(f"`{name}`" for name in list(context)[:NAMED_LISTED])
    if len(context) > NAMED_LISTED:
        names += f" and {len(context) - NAMED_LISTED:,} more (list(context) names them all)"
    lines = [
        f"Your context is {len(context):,} named inputs: {names}. Each is a REPL variable of "
        "its own name (`context` is a dict holding the same objects by name):"]
    size = 0
    unlisted, unlisted_size = 0, 0
    for index, (name, value) in enumerate(context.items()):
        if index >= NAMED_DESCRIBED:
            unlisted, unlisted_size = unlisted + 1, unlisted_size + _input_size(value)
        elif isinstance(value, str):
            head = value[:NAMED_HEAD_CHARS]
            lines.append(f"- `{name}`: a str of {len(value):,} characters, starting "
                         f"<head>{head}</head>")
            size += len(value)
        elif isinstance(value, list):
            chars = sum(len(x) for x in value)
            lines.append(f"- `{name}`: a list of {len(value):,} str ({chars:,} characters "
                         "in all)")
            size += chars
        else:
            _, text, bytes_ = describe(value)
            text = _CODE_CONTEXT.sub(name, text.replace("Your context is", f"`{name}` is"))
            lines.append("- " + text.replace("\n", "\n  "))
            size += bytes_
    if unlisted:
        lines.append(f"- and {unlisted:,} more inputs ({unlisted_size:,} characters or bytes "
                     "in all): look at them in the REPL")
    return "\n".join(lines), size + unlisted_size


def _input_size(value: object) -> int:
    """Characters of a text input, bytes of a rich one (as :func:`describe` counts them)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(len(x) for x in value)
    return describe(value)[2]


def _describe_bytes(head: bytes, size: int, data: object) -> str:
    mime = kinds.sniff_image(head)
    if mime is not None:
        dims = kinds.image_size(data)  # type: ignore[arg-type]
        shown = f", {dims[0]}x{dims[1]} pixels" if dims else ""
        return (
            f"Your context is bytes: {size:,} bytes of a {mime} image{shown}. Open it with "
            "Pillow if it imports (PIL.Image.open(io.BytesIO(context))) to crop it, and look "
            "at it through a vision sub-model: llm_query(prompt, images=[context])."
        )
    return (
        f"Your context is bytes: {size:,} bytes, not text. The first {len(head)} bytes: "
        f"{head!r}."
    )


def _describe_columns(names: list[str], types: list[str]) -> list[str]:
    shown = [f"  {n}: {t}" for n, t in zip(names[:DESCRIBED_COLUMNS], types, strict=False)]
    if len(names) > DESCRIBED_COLUMNS:
        shown.append(f"  ... ({len(names) - DESCRIBED_COLUMNS:,} more columns)")
    return shown


def _describe_dataframe(df: Any) -> str:
    rows, cols = df.shape
    lines = [
        f"Your context is a pandas DataFrame: {rows:,} rows x {cols:,} columns, index "
        f"{type(df.index).__name__}. In the REPL `context` is the same DataFrame (pandas "
        "imports there). Columns and dtypes:",
        *_describe_columns([str(c) for c in df.columns], [str(t) for t in df.dtypes]),
        f"The first {min(HEAD_ROWS, rows)} rows:",
        str(df.head(HEAD_ROWS).to_string(max_colwidth=40))[:2_000],
    ]
    return "\n".join(lines)


def _describe_table(table: Any, rows: int, how: str = "") -> str:
    schema = table.schema
    lines = [
        f"Your context is a pyarrow Table: {rows:,} rows x {len(schema.names):,} columns"
        f"{how}. In the REPL `context` is the same Table (pyarrow imports there; "
        "context.to_pandas() for a DataFrame). Columns and types:",
        *_describe_columns(list(schema.names), [str(t) for t in schema.types]),
    ]
    return "\n".join(lines)


def _describe_parquet(meta: dict[str, Any]) -> str:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(meta["path"])
    schema = parquet.schema_arrow
    rows = parquet.metadata.num_rows
    names, types = list(schema.names), [str(t) for t in schema.types]
    if meta["type"] == "DataFrame":
        return "\n".join([
            f"Your context is a pandas DataFrame read from the Parquet file {meta['path']}: "
            f"{rows:,} rows x {len(names):,} columns. In the REPL `context` is that DataFrame. "
            "Columns and Arrow types:",
            *_describe_columns(names, types),
        ])
    return "\n".join([
        f"Your context is a pyarrow Table read from the Parquet file {meta['path']}: "
        f"{rows:,} rows x {len(names):,} columns. Columns and types:",
        *_describe_columns(names, types),
    ])


def _describe_files(root: str, files: list[str]) -> tuple[str, int]:
    sizes = []
    for name in files:
        try:
            sizes.append(os.path.getsize(os.path.join(root, name)))
        except OSError:
            sizes.append(0)
    total = sum(sizes)
    suffixes: dict[str, int] = {}
    for name in files:
        suffix = os.path.splitext(name)[1].lower() or "(none)"
        suffixes[suffix] = suffixes.get(suffix, 0) + 1
    common = sorted(suffixes.items(), key=lambda kv: (-kv[1], kv[0]))[:12]
    lines = [
        f"Your context is a directory of {len(files):,} files ({total:,} bytes), mounted "
        f"read-only at {root}. In the REPL `context` maps each file's path relative to it to "
        "its contents, read when you ask (a .parquet file as a table: a DataFrame with pandas; "
        "str for UTF-8 text; else bytes): list(context) names "
        "the files, context['a/b.txt'] reads one, context.path('a/b.txt') is its full path "
        "(for pandas.read_csv, PIL.Image.open ...).",
        "File types: " + ", ".join(f"{s} {n:,}" for s, n in common),
        f"Files{' (the first ' + str(LISTED_FILES) + ')' if len(files) > LISTED_FILES else ''}, "
        "with their sizes in bytes:",
        *(f"  {name} {size:,}" for name, size in zip(files[:LISTED_FILES], sizes, strict=False)),
    ]
    if len(files) > LISTED_FILES:
        lines.append(f"  ... ({len(files) - LISTED_FILES:,} more: list(context) has them all)")
    return "\n".join(lines), total
