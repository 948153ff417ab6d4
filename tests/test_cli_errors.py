"""Failures inside a Prefect flow still reach the terminal as one line; the traceback only with --debug."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def varyflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=180)


def test_unknown_kind_is_one_line(tmp_path):
    out = varyflow("render", "nosuch", "--count", "2", "--out", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "varyflow: error: unknown kind 'nosuch'; known kinds: pdf, document, chart, echart, formula, table, latex_page, negative"]


def _pdf(text: str) -> bytes:
    import pymupdf

    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), text, fontsize=14)
    return doc.tobytes()


def _no_prefect_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which reaching Prefect at all would show: its API is a closed port and its home a
    folder that must stay absent."""
    return {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": "http://127.0.0.1:9/api",
            "PREFECT_HOME": str(tmp_path / "prefect-home")}


def test_bad_requests_fail_before_prefect_starts(tmp_path):
    """Unknown --params keys, an unwritable --out, a missing or empty --source, an input kind without one: one
    line and exit 1, before any flow run (today they failed 35-41 s in, after Prefect's ERROR lines)."""
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "notes.txt").write_text("no PDF here")
    store = str(tmp_path / "store")
    cases = {
        ("render", "chart", "--params", '{"colour": "red"}', "--out", store): "chart has no parameter 'colour'; it takes: lang",
        ("render", "document", "--out", str(tmp_path / "a-file" / "root")): "--out: ",
        ("render", "pdf", "--source", str(tmp_path / "missing"), "--out", store): f"--source {tmp_path / 'missing'}: source not found",
        ("render", "pdf", "--source", str(tmp_path / "empty"), "--out", store): "no files there",
        ("render", "pdf", "--source", str(tmp_path / "texts"), "--out", store): "none of its 1 files is usable by pdf (.pdf)",
        ("render", "negative", "--out", store): "negative reads input files: give --source",
        ("render", "document", "--max-reject-rate", "1.5", "--out", store): "--max-reject-rate must be between 0 and 1",
    }
    for argv, message in cases.items():
        out = subprocess.run([sys.executable, "-m", "flows.cli", *argv, "--count", "2"], capture_output=True, text=True,
                             cwd=tmp_path, env=_no_prefect_env(tmp_path), timeout=180)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 1 and len(lines) == 1 and lines[0].startswith("varyflow: error: "), (argv, out.stderr)
        assert message in lines[0], (argv, lines[0])
        assert not (tmp_path / "prefect-home").exists() and not out.stdout, argv
    assert not list((tmp_path / "store").rglob("*.json"))


def test_missing_bucket_is_one_line_before_prefect_starts(tmp_path, s3_endpoint):
    out = subprocess.run([sys.executable, "-m", "flows.cli", "render", "document", "--count", "2", "--out",
                          "s3://no-such-bucket-here/data"], capture_output=True, text=True, cwd=tmp_path,
                         env=_no_prefect_env(tmp_path), timeout=180)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "varyflow: error: --out: s3://no-such-bucket-here/data: bucket 'no-such-bucket-here' does not exist"]


def test_json_into_a_closed_pipe_is_quiet(tmp_path):
    from storage import DatasetWriter
    from tests.storage_helpers import make_rows

    writer = DatasetWriter(str(tmp_path), "d", "ab" * 32)
    manifest = writer.commit([writer.write_shard(0, make_rows(0, 2))])
    # `head -c 0` exits at once, so varyflow writes into a pipe nobody reads
    shell = (f"{sys.executable} -m flows.cli data show {manifest} --json 2>{tmp_path / 'err'} | head -c 0; "
             "exit ${PIPESTATUS[0]}")
    out = subprocess.run(["bash", "-c", shell], cwd=tmp_path, env=_no_prefect_env(tmp_path), timeout=180)
    assert (tmp_path / "err").read_text() == ""
    assert out.returncode in (0, 141)  # 0 when it finished writing before head closed the pipe


def test_error_inside_the_flow_prints_no_traceback(tmp_path, prefect_api):
    """Over --max-reject-rate: the run fails inside the flow, commits nothing and names its top reasons."""
    source = tmp_path / "pdfs"
    source.mkdir()
    (source / "a.pdf").write_bytes(_pdf("Alpha"))
    for name in ("b.pdf", "c.pdf"):
        (source / name).write_bytes(b"%PDF-1.4 this is not a pdf")
    argv = ("render", "pdf", "--count", "3", "--out", str(tmp_path / "store"), "--source", str(source),
            "--max-reject-rate", "0.5", "--workers", "1", "--runner", "thread")
    out = varyflow(*argv, cwd=tmp_path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr + out.stdout
    errors = [line for line in out.stderr.splitlines() if line.startswith("varyflow: error:")]
    assert len(errors) == 1, out.stderr[-2000:]
    assert "pdf: 2 of 3 samples rejected (66.7% > max_reject_rate 50.0%), nothing committed; top reasons: " in errors[0]
    debug = varyflow("--debug", *argv, cwd=tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    # nothing was committed for the failed render; under the limit the same render commits, rejects counted
    assert not list((tmp_path / "store").rglob("manifests/*.json"))
    ok = varyflow(*argv[:-6], "--max-reject-rate", "0.7", "--workers", "1", "--runner", "thread", "--json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert '"rows": 1' in ok.stdout


def test_render_help_lists_every_kind_and_what_it_needs(tmp_path):
    from generators import KINDS

    out = varyflow("render", "--help", cwd=tmp_path)
    assert out.returncode == 0
    kinds = {line.split(":")[0].strip(): line for line in out.stdout.split("kinds:\n", 1)[1].splitlines()}
    assert set(kinds) == set(KINDS)
    assert "needs --source" in kinds["pdf"] and "needs --source" in kinds["negative"]
    assert "no input needed" in kinds["document"] and "columns" in kinds["document"]


def test_storage_failure_inside_the_flow_is_one_line(tmp_path, prefect_api, s3_endpoint, s3_bucket):
    """An input in a bucket that does not exist, read mid-render: one line naming it, no Prefect tracebacks,
    no retries of what no retry fixes, nothing committed."""
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=s3_bucket, Key="in/a.pdf", Body=_pdf("Alpha"))
    names = tmp_path / "inputs.txt"
    names.write_text(f"s3://{s3_bucket}/in/a.pdf\ns3://{s3_bucket}-gone/in/b.pdf\n")
    out = varyflow("render", "pdf", "--count", "2", "--source", str(names), "--out", f"s3://{s3_bucket}/data",
                   "--workers", "1", "--runner", "thread", cwd=tmp_path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr + out.stdout
    errors = [line for line in out.stderr.splitlines() if line.startswith("varyflow: error:")]
    assert errors == [f"varyflow: error: s3://{s3_bucket}-gone/in/b.pdf: bucket '{s3_bucket}-gone' does not exist"]
    assert "Retry 1/" not in out.stderr  # a missing bucket is not retried (Prefect logs "Retry 1/3 will start ...")


def test_every_option_of_the_inspecting_commands_says_what_it_is():
    import argparse

    from flows.cli import build_parser

    def sub(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
        (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return action.choices[name]

    parser = build_parser()
    for path in (("eval",), ("ocr",), ("data", "verify"), ("data", "show"), ("data", "files"), ("lineage",), ("render",)):
        p = parser
        for name in path:
            p = sub(p, name)
        bare = [a.dest for a in p._actions if not a.help and not isinstance(a, argparse._HelpAction)]
        assert not bare, (path, bare)
