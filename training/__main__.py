"""`python -m training ...` — the same commands as `varyflow train|eval|ocr`, without Prefect. The
`deepspeed` launcher runs this module with `--local_rank=N` inserted; the rank comes from the
environment it also sets, so the flag is accepted anywhere and dropped."""
from __future__ import annotations

import argparse
import os
import sys

from training.errors import TrainingError


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = []
    for a in argv:
        if a.startswith("--local_rank=") or a.startswith("--local-rank="):
            os.environ.setdefault("LOCAL_RANK", a.split("=", 1)[1])
        else:
            rest.append(a)
    from training.cli import register

    parser = argparse.ArgumentParser(prog="python -m training")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    register(sub)
    args = parser.parse_args(rest)
    try:
        return int(args.func(args) or 0)
    except (TrainingError, FileNotFoundError, ValueError) as e:
        print(f"training: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
