"""Checkpoints under a storage root that is not a local folder.

Training writes a checkpoint into local scratch (the loop, DeepSpeed and `save_pretrained` want files);
`publish_checkpoint` then uploads the folder under the root (`<root>/checkpoints/...`) and moves its lineage
record there: beside the upload and in the root's index, under the uploaded location, with the scratch
location's index entries removed. `fetch_checkpoint` brings an `s3://` checkpoint back into a local cache
for whatever must read files (evaluation, OCR, `init_from`); a local checkpoint is returned as is.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from storage.errors import StorageError
from storage.lineage import FORMAT, _write, key, read_lineage
from storage.location import LocalLocation, Location, S3Location

CACHE_ENV = "VARYFLOW_CACHE"


def copy_tree(src: str | Location, dst: str | Location) -> int:
    """Copy every file under `src` to the same relative path under `dst` (streamed; local or S3 either
    side). Returns the number of files."""
    source, target = Location.parse(src), Location.parse(dst)
    n = 0
    for loc in source.list():
        out = target / loc.relative_to(source)
        if isinstance(loc, LocalLocation) and isinstance(out, S3Location):
            # boto3's managed transfer: multipart for large files (one PUT stops at 5 GB; weights are bigger)
            out._call("upload", lambda Bucket, **kw: out.client.upload_file(str(loc.path), Bucket, out.key))
        elif isinstance(loc, S3Location) and isinstance(out, LocalLocation):
            out.path.parent.mkdir(parents=True, exist_ok=True)
            loc._call("download", lambda Bucket, **kw: loc.client.download_file(Bucket, loc.key, str(out.path)))
        else:
            with out.open_write() as f:
                if isinstance(loc, LocalLocation):
                    with open(loc.path, "rb") as src_file:
                        shutil.copyfileobj(src_file, f, 8 << 20)
                else:
                    f.write(loc.read_bytes())
        n += 1
    return n


def publish_checkpoint(local: str | Location, target: str | Location, index_root: str | Location) -> dict:
    """Upload the checkpoint folder `local` to `target` and make `target` the checkpoint its lineage names,
    beside it and in `index_root`'s index (the scratch entries go). Returns the moved record."""
    src, dst, root = Location.parse(local), Location.parse(target), Location.parse(index_root)
    record = read_lineage(src)
    if record.get("format") != FORMAT:
        raise StorageError(f"{src.uri}/lineage.json: not a varyflow lineage record")
    copy_tree(src, dst)
    old = record["checkpoint"]
    record = {**record, "checkpoint": dst.uri, "published_from": old}
    _write(dst, record, root)
    index = root / "lineage"
    if old != dst.uri:
        (index / "by-checkpoint" / f"{key(old)}.json").delete()
        for s in record["shards"]:
            (index / "by-shard" / key(s["uri"]) / f"{key(old)}.json").delete()
    return record


def fetch_checkpoint(checkpoint: str | Location, cache: str | None = None) -> Path:
    """A local folder holding `checkpoint`: itself when local; else a copy under the cache
    ($VARYFLOW_CACHE, default ~/.cache/varyflow), fetched again only when its lineage record changed."""
    loc = Location.parse(checkpoint)
    if isinstance(loc, LocalLocation):
        return loc.path
    base = Path(cache or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "varyflow") / "checkpoints"
    folder = base / hashlib.sha256(loc.uri.encode()).hexdigest()[:24]
    remote_lineage = (loc / "lineage.json").read_bytes()
    local_lineage = folder / "lineage.json"
    if local_lineage.is_file() and local_lineage.read_bytes() == remote_lineage:
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    copy_tree(loc, str(partial))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)  # whole or absent: a crash mid-download leaves only the .partial folder
    (folder / "source.json").write_text(json.dumps({"checkpoint": loc.uri}))
    return folder
