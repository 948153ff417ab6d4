"""The shard schema: a public contract shared by every writer and reader.

The Parquet file carries Hugging Face `features` metadata, so
`datasets.load_dataset("parquet", data_files=...)` decodes the `image` column to PIL images.
"""
from __future__ import annotations

import json

import pyarrow as pa

COLUMNS = ("id", "image", "width", "height", "kind", "lang", "prompt", "text", "meta")

_HF_FEATURES = {
    "id": {"dtype": "string", "_type": "Value"},
    "image": {"_type": "Image"},
    "width": {"dtype": "int32", "_type": "Value"},
    "height": {"dtype": "int32", "_type": "Value"},
    "kind": {"dtype": "string", "_type": "Value"},
    "lang": {"dtype": "string", "_type": "Value"},
    "prompt": {"dtype": "string", "_type": "Value"},
    "text": {"dtype": "string", "_type": "Value"},
    "meta": {"dtype": "string", "_type": "Value"},
}

SHARD_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("image", pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("kind", pa.string()),
        pa.field("lang", pa.string()),
        pa.field("prompt", pa.string()),
        pa.field("text", pa.string()),
        pa.field("meta", pa.string()),  # JSON: generator, version, every sampled parameter
    ],
    metadata={b"huggingface": json.dumps({"info": {"features": _HF_FEATURES}}).encode()},
)

# PNG bytes do not shrink under zstd (docs/measured-figures.md: ~2% for half the write speed); everything else does.
PARQUET_COMPRESSION = {"image.bytes": "none", "image.path": "zstd", **{c: "zstd" for c in COLUMNS if c != "image"}}


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts with the schema's columns, e.g. `Sample.to_row()`) -> a Table with the shard schema."""
    try:
        return pa.Table.from_pylist(rows, schema=SHARD_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as e:
        raise ValueError(f"rows do not match the shard schema: {e}") from None


def check_table(table: pa.Table) -> pa.Table:
    """Accept a Table with the shard's columns (any order) and return it in the canonical schema."""
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"table lacks shard columns {missing}")
    return table.select(list(COLUMNS)).cast(SHARD_SCHEMA)
