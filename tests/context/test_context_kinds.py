"""What the root model is told about each non-text context, and what a refused one says."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from fastrlm import ContextError
from fastrlm.context import canonical_bytes, describe_context
from fastrlm.context._info import describe_shape

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")


def test_a_dataframe_is_described_by_shape_columns_dtypes_and_head() -> None:
    df = pd.DataFrame({"city": ["Oslo", "Lima"], "temp": [3.5, 19.0], "n": [1, 2]})
    info = describe_shape(df)
    text = info.describe()
    assert info.type == "DataFrame"
    assert "2 rows x 3 columns" in text and "RangeIndex" in text
    assert "temp: float64" in text and "n: int64" in text and "Oslo" in text


def test_an_arrow_table_and_a_parquet_file_are_described(tmp_path: Path) -> None:
    table = pa.table({"x": [1, 2, 3]})
    assert "3 rows x 1 columns" in describe_shape(table).describe()
    path = tmp_path / "t.parquet"
    pd.DataFrame({"a": range(7), "b": list("abcdefg")}).to_parquet(path)
    info = describe_shape(path)
    assert info.type == "DataFrame"
    assert "7 rows x 2 columns" in info.describe() and str(path) in info.describe()


def test_a_directory_lists_its_tree_with_sizes(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("print(1)\n")
    (tmp_path / "README.md").write_text("# hi\n")
    (tmp_path / "link").symlink_to("/etc/passwd")
    info = describe_shape(tmp_path)
    text = info.describe()
    assert info.type == "files" and info.size_bytes == 14
    assert "a directory of 2 files (14 bytes)" in text
    assert "  README.md 5" in text and "  src/main.py 9" in text
    assert "link" not in text  # symbolic links are not part of the tree


def test_a_long_listing_is_cut_and_says_how_many_more(tmp_path: Path) -> None:
    for i in range(250):
        (tmp_path / f"f{i:03d}.txt").write_text("x")
    text = describe_shape(tmp_path).describe()
    assert "f199.txt" in text and "f200.txt" not in text and "50 more" in text


def test_images_are_described_by_size_and_format() -> None:
    image_module = pytest.importorskip("PIL.Image")
    image = image_module.new("RGB", (40, 30))
    assert "40x30 pixels" in describe_shape(image).describe()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    text = describe_shape(buffer.getvalue()).describe()
    assert "image/png image, 40x30 pixels" in text and "images=[context]" in text


def test_plain_bytes_show_their_first_bytes() -> None:
    text = describe_shape(b"\x00\x01binary").describe()
    assert "8 bytes" in text and "\\x00\\x01binary" in text


def test_the_digest_of_a_dataframe_follows_its_data() -> None:
    a = describe_context(pd.DataFrame({"x": [1, 2]}))
    b = describe_context(pd.DataFrame({"x": [1, 2]}))
    c = describe_context(pd.DataFrame({"x": [1, 3]}))
    assert a.sha256 == b.sha256 != c.sha256
    assert canonical_bytes(b"abc") == b"abc"


@pytest.mark.parametrize(
    "context",
    [
        pytest.param(object(), id="object"),
        pytest.param({1, 2}, id="set"),
        pytest.param([b"bytes inside a list"], id="bytes-in-list"),
        pytest.param({"frame": complex(1, 2)}, id="complex-in-dict"),
        pytest.param(None, id="none"),
    ],
)
def test_an_unsupported_context_lists_what_is_accepted(context: object) -> None:
    with pytest.raises(ContextError) as caught:
        describe_shape(context)
    message = str(caught.value)
    for kind in ("a str", "list of str", "JSON", "bytes", "pathlib.Path", "DataFrame",
                 "pyarrow Table", "PIL image"):
        assert kind in message, message


def test_a_path_that_does_not_exist_or_is_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="does not exist"):
        describe_shape(tmp_path / "missing")
    with pytest.raises(ContextError, match="whole file system"):
        describe_shape(Path("/"))


def test_a_broken_parquet_file_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(ContextError, match="not a readable Parquet file"):
        describe_shape(path)
