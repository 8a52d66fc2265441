"""Source readers: formats, metadata, cursors that list only what is new."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotate_anyone.errors import InvalidInput
from annotate_anyone.pipeline.sources import reader_for_source
from annotate_anyone.pipeline.sources.folder import FolderReader
from annotate_anyone.pipeline.sources.url_list import UrlListReader

ROWS = [
    {"url": "https://example.test/a.jpg", "caption": "a person", "license": "cc-by"},
    {"url": "https://example.test/b.jpg", "caption": "", "license": "cc0"},
    {"url": "", "caption": "no url", "license": "cc0"},
    {"url": "https://example.test/c.jpg", "caption": "another", "license": "cc-by"},
]


def write_list(path: Path, rows: list[dict]) -> Path:
    fmt = path.suffix
    if fmt in (".csv", ".tsv"):
        sep = "\t" if fmt == ".tsv" else ","
        lines = [sep.join(rows[0])] + [sep.join(str(v) for v in r.values()) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    elif fmt == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_url_list_formats(tmp_path, suffix):
    reader = reader_for_source("url_list", str(write_list(tmp_path / f"list{suffix}", ROWS)))
    items, cursor = reader.scan(None)
    assert [i.uri for i in items] == [ROWS[0]["url"], ROWS[1]["url"], ROWS[3]["url"]]
    assert items[0].meta == {"row": 0, "caption": "a person", "license": "cc-by"}
    assert "caption" not in items[1].meta and items[2].meta["row"] == 3
    assert cursor["rows"] == 4 and cursor["complete"]
    assert reader.scan(cursor) == ([], cursor)


def test_url_column_and_meta_columns_options(tmp_path):
    rows = [{"link": "https://example.test/x.jpg", "text": "t", "w": 10, "h": 20}]
    path = write_list(tmp_path / "l.parquet", rows)
    reader = reader_for_source(
        "url_list", str(path), {"url_column": "link", "caption_column": "text", "meta_columns": ["w"], "bogus": 1}
    )
    (item,), _ = reader.scan()
    assert item.uri == "https://example.test/x.jpg" and item.meta == {"row": 0, "caption": "t", "w": 10}
    with pytest.raises(InvalidInput):
        UrlListReader(path, url_column="nope").scan()


def test_appended_csv_resumes_and_rewritten_list_restarts(tmp_path):
    path = write_list(tmp_path / "l.csv", ROWS)
    reader = UrlListReader(path)
    _, cursor = reader.scan()
    with path.open("a") as f:
        f.write("https://example.test/d.jpg,late,cc0\n")
    items, cursor2 = reader.scan(cursor)
    assert [i.uri for i in items] == ["https://example.test/d.jpg"] and items[0].meta["row"] == 4
    os.utime(path)  # touched, not changed
    assert reader.scan(cursor2)[0] == []
    write_list(path, [{"url": "https://example.test/z.jpg", "caption": "new", "license": "x"}] + ROWS)
    items, _ = reader.scan(cursor2)
    assert len(items) == 4 and items[0].uri.endswith("z.jpg")  # changed in place: listed again


def test_url_list_limit_continues(tmp_path):
    path = write_list(tmp_path / "l.jsonl", ROWS)
    reader = UrlListReader(path)
    first, cursor = reader.scan(limit=2)
    rest, cursor = reader.scan(cursor, limit=2)
    assert [i.uri for i in first + rest] == [ROWS[0]["url"], ROWS[1]["url"], ROWS[3]["url"]]
    assert reader.scan(cursor)[0] == []


def test_folder_rescan_lists_only_new_files(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for name in ("a.jpg", "sub/b.PNG", "notes.txt", ".hidden.jpg"):
        (root / name).write_bytes(b"x")
    reader = reader_for_source("folder", str(root))
    items, cursor = reader.scan(None)
    assert sorted(i.meta["path"] for i in items) == ["a.jpg", "sub/b.PNG"]
    assert all(Path(i.uri).is_absolute() for i in items)
    assert reader.scan(cursor)[0] == []
    time.sleep(0.01)
    old = tmp_path / "old.jpg"
    old.write_bytes(b"y")
    os.utime(old, (1_000_000, 1_000_000))  # an ancient mtime, as cp -p would keep
    shutil.move(old, root / "sub" / "c.jpg")
    (root / "d.webp").write_bytes(b"z")
    items, cursor = reader.scan(cursor)
    assert sorted(i.meta["path"] for i in items) == ["d.webp", "sub/c.jpg"]
    assert reader.scan(cursor)[0] == []


def test_folder_limit_continues(tmp_path):
    for i in range(5):
        (tmp_path / f"{i}.jpg").write_bytes(b"x")
    reader = FolderReader(tmp_path)
    seen, cursor = [], None
    for _ in range(4):
        items, cursor = reader.scan(cursor, limit=2)
        seen += [i.meta["path"] for i in items]
    assert sorted(seen) == [f"{i}.jpg" for i in range(5)]


def test_unknown_kind():
    with pytest.raises(InvalidInput):
        reader_for_source("ftp", "x")


def test_s3_prefix_pages_and_cursor(s3_server):
    from annotate_anyone.pipeline.sources.s3_prefix import S3PrefixReader

    client = s3_server.client()
    bucket = s3_server.new_bucket()
    for key in ("in/2024/a.jpg", "in/2024/b.png", "in/2024/readme.txt", "other/x.jpg"):
        client.put_object(Bucket=bucket, Key=key, Body=b"data")
    reader = S3PrefixReader(f"s3://{bucket}/in/", client=client, page_size=1, order="key")
    items, cursor = reader.scan(None)
    assert [i.uri for i in items] == [f"s3://{bucket}/in/2024/a.jpg", f"s3://{bucket}/in/2024/b.png"]
    assert items[0].meta["size"] == 4
    assert reader.scan(cursor)[0] == []
    client.put_object(Bucket=bucket, Key="in/2025/c.jpg", Body=b"data")
    items, cursor = reader.scan(cursor)
    assert [i.uri for i in items] == [f"s3://{bucket}/in/2025/c.jpg"]
    assert cursor == {"last_key": "in/2025/c.jpg"}
    client.put_object(Bucket=bucket, Key="in/2023/late.jpg", Body=b"data")
    assert reader.scan(cursor)[0] == []  # the key order's blind spot: why "modified" is the default


def test_s3_prefix_by_modification_finds_any_new_key(s3_server):
    """The default cursor follows LastModified: a new object is listed whatever its key sorts like, objects
    in the same second are not lost, and a scan cut by ``limit`` continues where it stopped."""
    import time

    from annotate_anyone.pipeline.sources import reader_for_source
    from annotate_anyone.pipeline.sources.s3_prefix import S3PrefixReader

    client = s3_server.client()
    bucket = s3_server.new_bucket()
    for key in ("in/m.jpg", "in/z.jpg", "in/a.jpg", "in/notes.txt"):
        client.put_object(Bucket=bucket, Key=key, Body=b"data")
    reader = S3PrefixReader(f"s3://{bucket}/in/", client=client, page_size=2)
    first, cursor = reader.scan(None, limit=2)
    rest, cursor = reader.scan(cursor)
    keys = [i.meta["key"] for i in first + rest]
    assert sorted(keys) == ["in/a.jpg", "in/m.jpg", "in/z.jpg"] and len(set(keys)) == 3
    assert reader.scan(cursor)[0] == []
    time.sleep(1.1)  # LastModified has one-second resolution
    client.put_object(Bucket=bucket, Key="in/0-early-sorting.jpg", Body=b"data")
    client.put_object(Bucket=bucket, Key="in/zz.jpg", Body=b"data")
    items, cursor = reader.scan(cursor)
    assert sorted(i.meta["key"] for i in items) == ["in/0-early-sorting.jpg", "in/zz.jpg"]
    assert reader.scan(cursor)[0] == []
    with pytest.raises(InvalidInput):
        reader_for_source("s3_prefix", f"s3://{bucket}/in/", {"order": "newest"})


def test_read_stage_reads_listed_s3_objects(s3_server):
    from annotate_anyone.pipeline.fetch import ReadStage
    from annotate_anyone.pipeline.record import Record
    from annotate_anyone.settings import Settings

    bucket = s3_server.new_bucket()
    s3_server.client().put_object(Bucket=bucket, Key="p/a.jpg", Body=b"jpeg bytes")
    settings = Settings(
        s3_endpoint_url=s3_server.endpoint_url, s3_access_key=s3_server.access_key, s3_secret_key=s3_server.secret_key
    )
    records = [Record(item_id=1, uri=f"s3://{bucket}/p/a.jpg"), Record(item_id=2, uri=f"s3://{bucket}/p/gone.jpg")]
    ReadStage(settings=settings).process_batch(records)
    assert records[0].data == b"jpeg bytes" and records[0].drop_reason is None
    assert records[1].drop_reason == "fetch:s3_not_found"
