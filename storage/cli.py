"""`varyflow data ...` and `varyflow lineage ...`: look at, check and export committed datasets."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from storage.lineage import checkpoints_of, read_lineage
from storage.location import default_root
from storage.manifest import read_manifest
from storage.shards import verify_shard


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect, verify and export committed datasets")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True

    show = dsub.add_parser("show", help="counts, sizes, kinds, langs and rejects of a manifest")
    show.add_argument("manifest", help="manifest .json, or a dataset directory for its newest version")
    show.add_argument("--json", action="store_true", help="the manifest summary as JSON")
    show.set_defaults(func=cmd_show)

    verify = dsub.add_parser("verify", help="check every shard exists and matches its sha256 (exit 1 if not)")
    verify.add_argument("manifest", help="manifest .json, or a dataset directory for its newest version")
    verify.set_defaults(func=cmd_verify)

    files = dsub.add_parser("files", help="the shard locations a manifest commits, one per line (for data_files=)")
    files.add_argument("manifest", help="manifest .json, or a dataset directory for its newest version")
    files.add_argument("--json", action="store_true", help="a JSON list instead of lines")
    files.set_defaults(func=cmd_files)

    export = dsub.add_parser("export", help="write N samples as PNG + .txt pairs for eyeballing")
    export.add_argument("manifest", help="manifest .json, or a dataset directory for its newest version")
    export.add_argument("--out", required=True, help="local directory")
    export.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
    export.set_defaults(func=cmd_export)

    imp = dsub.add_parser("import", help="LLaVA-style conversation JSON + its images -> a committed dataset")
    imp.add_argument("json", metavar="JSON", help="[{id, image, conversations: [{from: human|gpt, value}]}] (local or s3://)")
    imp.add_argument("--images", required=True, help="folder or s3:// prefix the records' image paths are relative to")
    imp.add_argument("--dataset", required=True, help="dataset name under the storage root")
    imp.add_argument("--out", help="storage root (default: $VARYFLOW_ROOT or ./varyflow-data)")
    imp.add_argument("--shard-rows", type=int, default=512)
    imp.set_defaults(func=cmd_import)

    lin = sub.add_parser("lineage", help="which shards built a checkpoint, or which checkpoints used a shard")
    lin.add_argument("checkpoint", nargs="?", help="a checkpoint location (a directory with lineage.json): its shards")
    lin.add_argument("--shard", help="a shard location: list the checkpoints trained on it")
    lin.add_argument("--root", default=None, help="storage root holding the lineage index (default: the shard's own root)")
    lin.add_argument("--json", action="store_true", help="the full records as JSON")
    lin.set_defaults(func=cmd_lineage)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def cmd_show(args: argparse.Namespace) -> int:
    m = read_manifest(args.manifest)
    info = m.summary()
    if args.json:
        print(json.dumps(info, indent=1, sort_keys=True))
        return 0
    print(f"{m.dataset} v{m.version}  {m.uri}")
    print(f"  rows {m.rows}  shards {len(m.shards)}  size {_human(m.bytes)}  sha256 {m.sha256[:16]}")
    for col, vals in m.counts.items():
        print(f"  {col:5s} " + "  ".join(f"{k}={v}" for k, v in vals.items()))
    rejected = sum(m.rejects.values())
    print(f"  rejects {rejected}" + ("  (" + ", ".join(f"{k}={v}" for k, v in m.rejects.items()) + ")" if rejected else ""))
    gen = m.facts.get("generator") or m.facts.get("kind")
    if gen:
        print(f"  generator {gen}  seed {m.facts.get('seed')}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    m = read_manifest(args.manifest)
    problems = [p for p in (verify_shard(s) for s in m.shards) if p]
    for p in problems:
        print(p)
    if problems:
        print(f"{m.uri}: {len(problems)} of {len(m.shards)} shards missing or corrupt", file=sys.stderr)
        return 1
    print(f"{m.uri}: all {len(m.shards)} shards present and matching ({m.rows} rows)")
    return 0


def cmd_files(args: argparse.Namespace) -> int:
    m = read_manifest(args.manifest)
    uris = [s.uri for s in sorted(m.shards, key=lambda s: s.index)]
    print(json.dumps(uris) if args.json else "\n".join(uris))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from storage.reader import StreamingReader

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for row in StreamingReader(args.manifest, shuffle=False, columns=["id", "image", "text", "kind"]):
        if n >= args.n:
            break
        stem = row["id"].replace("/", "_")
        data = row["image"]["bytes"]
        ext = ".jpg" if data[:3] == b"\xff\xd8\xff" else ".png"
        (out / f"{stem}{ext}").write_bytes(data)
        (out / f"{stem}.txt").write_text(row["text"], encoding="utf-8")
        n += 1
    print(f"exported {n} samples to {out}")
    return 0


def _root_of_shard(shard: str) -> str:
    """The storage root a shard lives under (<root>/datasets/<name>/shards/<file>), whose lineage index answers
    for it; an error saying so when the shard is not there or the root has no index."""
    from storage.errors import StorageError
    from storage.location import Location

    loc = Location.parse(shard)
    parts = loc.uri.rstrip("/").split("/")
    if len(parts) < 5 or parts[-2] != "shards" or parts[-4] != "datasets":
        raise StorageError(f"{loc.uri}: not a shard of a varyflow root (<root>/datasets/<name>/shards/...); give --root")
    if not loc.exists():
        raise StorageError(f"{loc.uri}: no such shard")
    root = loc.parent.parent.parent.parent
    if not (root / "lineage" / "by-checkpoint").list():
        raise StorageError(f"no lineage index under {root.uri} (the shard's root): no checkpoint recorded there; "
                           "give --root if the index lives elsewhere")
    return root.uri


def cmd_import(args: argparse.Namespace) -> int:
    from storage.importers import import_conversations
    from storage.location import default_root

    r = import_conversations(args.json, args.images, args.out or default_root(), args.dataset, args.shard_rows)
    rejected = ", ".join(f"{k}: {v}" for k, v in sorted(r["rejects"].items())) or "none"
    print(f"{r['rows']} conversations -> {r['manifest']} (rejects: {rejected})")
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    if bool(args.checkpoint) == bool(args.shard):
        raise ValueError("give either a CHECKPOINT or --shard LOCATION")
    if args.shard:
        records: Any = checkpoints_of(args.shard, args.root or _root_of_shard(args.shard))
        if args.json:
            print(json.dumps(records, indent=1))
        elif not records:
            print(f"no checkpoint was trained on {args.shard}")
        else:
            for r in records:
                print(f"{r['checkpoint']}  ({r['stage']})")
        return 0
    record = read_lineage(args.checkpoint)
    if args.json:
        print(json.dumps(record, indent=1, sort_keys=True))
        return 0
    print(f"{record['checkpoint']}  stage {record['stage']}")
    code = record.get("code", {})
    print(f"  code {code.get('git_commit')}{' (dirty)' if code.get('dirty') else ''}  config {record['config_hash'][:16]}")
    for p in record.get("parents", []):
        print(f"  parent {p}")
    for m in record["manifests"]:
        print(f"  manifest {m['uri']}  ({m['dataset']} v{m['version']}, {m['rows']} rows)")
    for s in record["shards"]:
        print(f"    {s['uri']}  sha256 {s['sha256'][:16]}")
    if record.get("prefect", {}).get("flow_run_id"):
        print(f"  flow run {record['prefect']['flow_run_id']}")
    if record.get("metrics"):
        print("  metrics " + "  ".join(f"{k}={v}" for k, v in record["metrics"].items() if not isinstance(v, (dict, list))))
    return 0
