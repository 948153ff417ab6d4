"""Datasets from outside: LLaVA-style conversation records (`[{id, image, conversations: [{from: human|gpt,
value}, ...]}]`, the format of Vary's SFT data) with their images (a folder or an `s3://` prefix) become
shards of the usual schema. The whole conversation stays in `meta["conversations"]` (JSON, so Hugging Face
readers still see plain columns); `prompt` and `text` hold the first exchange. A record without a readable
image or an assistant turn is a reject with its reason; the rest go on."""
from __future__ import annotations

import hashlib
import io
import json
import re
from typing import Any

from storage.errors import NotFound, StorageError
from storage.location import Location
from storage.manifest import DatasetWriter

IMAGE_TAG = "<image>"
_CJK = re.compile(r"[\u3400-\u9fff]")


def _turns(record: Any) -> list[dict[str, str]]:
    turns = record.get("conversations") if isinstance(record, dict) else None
    if not isinstance(turns, list) or not turns:
        raise ValueError("no conversations")
    out = []
    for t in turns:
        if not isinstance(t, dict) or t.get("from") not in ("human", "gpt") or not isinstance(t.get("value"), str):
            raise ValueError("a turn is not {from: human|gpt, value: text}")
        out.append({"from": t["from"], "value": t["value"]})
    if not any(t["from"] == "gpt" for t in out):
        raise ValueError("no assistant (gpt) turn")
    return out


def conversation_row(record: dict[str, Any], index: int, image: bytes, source: str) -> dict[str, Any]:
    from PIL import Image

    turns = _turns(record)
    with Image.open(io.BytesIO(image)) as im:
        width, height = im.size
        im.verify()
    first_human = next((t["value"] for t in turns if t["from"] == "human"), "")
    first_gpt = next(t["value"] for t in turns if t["from"] == "gpt")
    rid = str(record.get("id", index))
    text = " ".join(t["value"] for t in turns)
    return {
        "id": "conv-" + hashlib.sha256(f"{source}|{index}|{rid}".encode()).hexdigest()[:20],
        "image": {"bytes": image, "path": str(record["image"])},
        "width": width, "height": height, "kind": "conversation", "lang": "zh" if _CJK.search(text) else "en",
        "prompt": first_human.replace(IMAGE_TAG, "").strip(), "text": first_gpt,
        "meta": json.dumps({"conversations": turns, "source": source, "record": rid, "image": str(record["image"])},
                           ensure_ascii=False, sort_keys=True),
    }


def import_conversations(json_uri: str, images: str, root: str, dataset: str, shard_rows: int = 512) -> dict[str, Any]:
    """Commit the records of `json_uri` as dataset `dataset` under `root`; returns the manifest and counts."""
    body = Location.parse(json_uri).read_bytes()
    try:
        records = json.loads(body)
    except json.JSONDecodeError as e:
        raise StorageError(f"{json_uri}: not valid JSON ({e.msg})") from None
    if not isinstance(records, list):
        raise StorageError(f"{json_uri}: expected a JSON list of conversation records")
    folder = Location.parse(images)
    fingerprint = hashlib.sha256(body + b"|" + folder.uri.encode()).hexdigest()[:16]
    writer = DatasetWriter(root, dataset, fingerprint)
    shards, rows, rejects, total_rejects = [], [], {}, {}

    def flush() -> None:
        if rows or rejects:
            shards.append(writer.write_shard(len(shards), list(rows), rejects=dict(rejects)))
        rows.clear()
        rejects.clear()

    for index, record in enumerate(records):
        reason = None
        try:
            name = record.get("image") if isinstance(record, dict) else None
            if not isinstance(name, str) or not name:
                raise ValueError("no image named")
            rows.append(conversation_row(record, index, (folder / name).read_bytes(), json_uri))
        except NotFound:
            reason = "image not found"
        except ValueError as e:
            reason = str(e)
        except Exception as e:  # Pillow's many decode errors: the image is unreadable, whatever the type
            reason = f"unreadable image ({type(e).__name__})"
        if reason:
            rejects[reason] = rejects.get(reason, 0) + 1
            total_rejects[reason] = total_rejects.get(reason, 0) + 1
        if len(rows) == shard_rows:
            flush()
    flush()
    if not any(s.rows for s in shards):
        raise StorageError(f"{json_uri}: none of the {len(records)} records could be imported ({total_rejects})")
    manifest = writer.commit(shards, {"importer": "llava-conversations", "source": json_uri, "images": folder.uri})
    return {"manifest": manifest, "rows": sum(s.rows for s in shards), "rejects": total_rejects}
