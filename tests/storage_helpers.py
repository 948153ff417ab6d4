"""Row factories and a writer process shared by the storage tests."""
from __future__ import annotations

import io
import json
import sys
import time

from PIL import Image, ImageDraw


def png(i: int, size: int = 48) -> bytes:
    img = Image.new("L", (size, size), 255)
    ImageDraw.Draw(img).text((4, 16), str(i), fill=0)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def make_rows(start: int, stop: int, kind: str = "document", lang: str = "en") -> list[dict]:
    return [{
        "id": f"{kind}-{i:06d}", "image": {"bytes": png(i), "path": f"{kind}-{i:06d}.png"}, "width": 48,
        "height": 48, "kind": kind, "lang": lang if i % 3 else "zh", "prompt": "Provide the OCR results of this image.",
        "text": f"sample number {i}", "meta": json.dumps({"generator": "test", "index": i}),
    } for i in range(start, stop)]


def write_dataset(root: str, dataset: str, shards: int, rows_per_shard: int, fingerprint: str = "ab" * 32,
                  pause: float = 0.0, kind: str = "document") -> str:
    """Write (or finish writing) a dataset and commit it; shards already whole are not rewritten."""
    from storage import DatasetWriter

    writer = DatasetWriter(root, dataset, fingerprint)
    infos = []
    for k in range(shards):
        info = writer.existing_shard(k)
        if info is None:
            info = writer.write_shard(k, make_rows(k * rows_per_shard, (k + 1) * rows_per_shard, kind=kind),
                                      rejects={"blank": 1} if k == 0 else None)
            print(f"wrote {k}", flush=True)
        else:
            print(f"kept {k}", flush=True)
        infos.append(info)
        time.sleep(pause)
    uri = writer.commit(infos, facts={"generator": kind, "seed": 0})
    print(f"committed {uri}", flush=True)
    return uri


if __name__ == "__main__":  # python -m tests.storage_helpers ROOT DATASET SHARDS ROWS PAUSE
    write_dataset(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), pause=float(sys.argv[5]))
