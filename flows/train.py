"""Train flows: `vocabulary_generation` (stage 1, Vary-tiny) and `vocabulary_integration` (stage 2).

One device: the training entry point runs in this process. Several devices or nodes: the `deepspeed`
launcher runs `python -m training train ...` as a subprocess with a hostfile (or `--no_ssh --node_rank`
under Kubernetes, where every pod runs its own launcher). Either way the checkpoint's lineage carries the
flow run id and deployment, and the stage ends with an evaluation.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import re
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import deployment as runtime_deployment
from prefect.runtime import flow_run as runtime_flow_run

from flows.common import artifact_key, default_root, location_markdown, png_data_uri
from storage.location import is_uri
from training.config import path_fields

if TYPE_CHECKING:
    from training.config import TrainConfig

STAGE_MODELS = {"vocab": "vary_tiny", "integrate": "vary_base"}


@dataclasses.dataclass
class Launch:
    """Where a stage runs. gpus/nodes > 1 use the deepspeed launcher."""

    gpus: int = 1  # per node
    nodes: int = 1
    hostfile: str | None = None  # "host slots=N" lines; written from `hosts` when not given
    hosts: list[str] = dataclasses.field(default_factory=list)
    no_ssh: bool = False  # Kubernetes: one launcher per pod, no ssh between them
    node_rank: int | None = None
    master_addr: str | None = None
    master_port: int = 29500

    @property
    def distributed(self) -> bool:
        return self.gpus > 1 or self.nodes > 1


def write_hostfile(hosts: list[str], slots: int, path: str) -> str:
    Path(path).write_text("".join(f"{h} slots={slots}\n" for h in hosts))
    return path


# TrainConfig fields that name local files or folders (their field metadata says so); `deepspeed` may
# name a config file too.
LOCAL_PATH_FIELDS = path_fields()
NAMED_DEEPSPEED = ("", "true", "false", "off", "none", "zero2", "zero3")
REPO_ROOT = Path(__file__).resolve().parents[1]


def absolute_paths(cfg: TrainConfig, cwd: str) -> TrainConfig:
    """`cfg` with every local path resolved against `cwd` (URIs untouched): the launcher's ranks, and
    on other nodes their shells, must not read them against a directory of their own."""

    def resolve(value: str | None) -> str | None:
        if value is None or is_uri(value):
            return value
        return os.path.abspath(os.path.join(cwd, os.path.expanduser(value)))

    changes: dict[str, Any] = {name: resolve(getattr(cfg, name)) for name in LOCAL_PATH_FIELDS}
    changes["manifests"] = [resolve(m) for m in cfg.manifests]
    if isinstance(cfg.deepspeed, str) and cfg.deepspeed.lower() not in NAMED_DEEPSPEED:
        changes["deepspeed"] = resolve(cfg.deepspeed)
    return dataclasses.replace(cfg, **changes)


@dataclasses.dataclass
class LaunchPlan:
    cmd: list[str]
    cwd: str  # the user's working directory, kept
    env: dict[str, str]
    cfg: TrainConfig  # with absolute paths, as the ranks see it


def launch_plan(cfg: TrainConfig, launch: Launch, hostfile: str | None, cwd: str | None = None) -> LaunchPlan:
    """What `run_training` starts for a distributed stage: absolute paths, the user's cwd, and this
    checkout on PYTHONPATH so `--module training` imports the same code from any directory. The ranks
    get the config as a file beside the checkpoints (`--out` is shared by every node), not as options."""
    import hashlib
    import json

    cwd = os.path.abspath(cwd or os.getcwd())
    resolved = absolute_paths(cfg, cwd)
    body = json.dumps(resolved.to_dict(), indent=1, sort_keys=True)
    config_file = Path(resolved.out) / ".launch" / f"train-config-{hashlib.sha256(body.encode()).hexdigest()[:16]}.json"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(body)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    argv = ["train", resolved.stage, f"--config={config_file}"]
    return LaunchPlan(deepspeed_command(argv, launch, hostfile), cwd, env, resolved)


def stream_process(cmd: list[str], cwd: str, env: dict[str, str], line: Callable[[str], None], keep: int = 20) -> tuple[int, list[str]]:
    """Run `cmd`, handing each line of its merged stdout/stderr to `line` as it is printed (a launcher
    runs for hours; its output belongs in the run's log while it runs). Returns (exit code, last lines)."""
    tail: collections.deque[str] = collections.deque(maxlen=keep)
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1, errors="replace") as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            text = raw.rstrip("\n")
            tail.append(text)
            line(text)
        rc = proc.wait()
    return rc, list(tail)


def deepspeed_command(argv: list[str], launch: Launch, hostfile: str | None) -> list[str]:
    """The launcher command line; `deepspeed` appends --local_rank to our module's arguments."""
    cmd = ["deepspeed"]
    if launch.nodes > 1 or hostfile:
        cmd += ["--hostfile", hostfile or "/job/hostfile", "--num_nodes", str(launch.nodes)]
    cmd += ["--num_gpus", str(launch.gpus)]
    if launch.no_ssh:
        cmd += ["--no_ssh", "--node_rank", str(launch.node_rank or 0)]
    if launch.master_addr:
        cmd += ["--master_addr", launch.master_addr]
    cmd += ["--master_port", str(launch.master_port), "--module", "training"]
    return cmd + argv


# What the training loop prints every `log_every` steps (training/run.py): "step 25/150 loss 4.1234 (0.31s/step)".
STEP_LINE = re.compile(r"step (\d+)/(\d+) loss (\S+)")


class _StepTee:
    """Writes through to `real`; complete lines go to `progress.step_line` while `progress` is set."""

    def __init__(self, real: Any, progress: "TrainingProgress"):
        self.real, self.progress, self.pending = real, progress, ""

    def write(self, data: str) -> int:
        self.real.write(data)
        if self.progress is not None:
            self.pending += data
            *lines, self.pending = self.pending.split("\n")
            for line in lines:
                if self.progress.step_line(line):
                    self.progress.logger.info("%s", line.strip())
        return len(data)

    def flush(self) -> None:
        self.real.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...: the real stream's
        return getattr(self.real, name)


class TrainingProgress:
    """A progress artifact of a training stage, moved by the loop's step lines while it runs (in-process: its
    stdout; distributed: the launcher's output), each step line also logged to the run. The loop has no
    callback for this; its printed lines are the interface."""

    def __init__(self, stage: str, steps: int | None, logger: Any):
        from prefect.artifacts import create_progress_artifact

        self.stage, self.logger = stage, logger
        self.id = create_progress_artifact(0.0, key=artifact_key("train", stage, "progress"),
                                           description=f"{stage}: starting ({steps or '?'} steps)")

    def step_line(self, text: str) -> bool:
        from prefect.artifacts import update_progress_artifact

        m = STEP_LINE.search(text)
        if not m:
            return False
        step, total = int(m.group(1)), int(m.group(2))
        update_progress_artifact(self.id, 100.0 * step / max(total, 1), description=f"{self.stage}: step {step}/{total}, loss {m.group(3)}")
        return True

    def launcher_line(self, text: str) -> None:
        self.logger.info("%s", text)
        self.step_line(text)

    @contextlib.contextmanager
    def watching_stdout(self) -> Any:
        """Tee this process's stdout through `step_line` (and the run log) while the loop runs in it. The tee is
        a plain object, not an io stream: whatever grabbed sys.stdout meanwhile (a logging handler created
        in the block) keeps a writer that passes through to the real stdout after the block, never a stream
        closed when the tee is collected."""
        import sys

        tee = _StepTee(sys.stdout, self)
        with contextlib.redirect_stdout(tee):  # type: ignore[type-var]
            try:
                yield
            finally:
                tee.progress = None

    def done(self) -> None:
        from prefect.artifacts import update_progress_artifact

        update_progress_artifact(self.id, 100.0, description=f"{self.stage}: done")


@task(name="train-stage", task_run_name="train {stage}")
def run_training(stage: str, config: dict[str, Any], launch: dict[str, Any] | None) -> dict[str, Any]:
    from training.config import TrainConfig

    logger = get_run_logger()
    cfg = TrainConfig.from_dict(config).validate()
    where = Launch(**(launch or {}))
    progress = TrainingProgress(stage, cfg.steps, logger)
    if not where.distributed:
        from training.run import train

        with progress.watching_stdout():
            result = train(cfg)
        progress.done()
        return {"checkpoint": result.checkpoint, "losses": list(result.losses), "metrics": dict(result.metrics)}
    with tempfile.TemporaryDirectory() as tmp:
        hostfile = where.hostfile or (write_hostfile(where.hosts, where.gpus, f"{tmp}/hostfile") if where.hosts else None)
        plan = launch_plan(cfg, where, hostfile)
        logger.info("launching in %s: %s", plan.cwd, shlex.join(plan.cmd))
        rc, tail = stream_process(plan.cmd, plan.cwd, plan.env, progress.launcher_line)
    if rc != 0:
        raise RuntimeError(f"deepspeed launcher exited {rc}: {tail[-1] if tail else 'no output'}")
    from storage.lineage import read_lineage
    from training.run import latest_checkpoint

    ckpt = latest_checkpoint(Path(plan.cfg.out))
    if ckpt is None:
        raise RuntimeError(f"deepspeed launcher exited 0 but left no checkpoint under {plan.cfg.out}")
    record = read_lineage(str(ckpt))
    return {"checkpoint": str(ckpt), "losses": [], "metrics": record.get("metrics", {})}


@task(name="evaluate", task_run_name="evaluate {stage}")
def run_evaluation(stage: str, checkpoint: str, manifests: list[str], limit: int | None, max_new_tokens: int,
                   index_root: str | None) -> dict[str, Any]:
    from storage.lineage import update_metrics
    from training.evaluate import checkpoint_holdout, evaluate

    from storage.publish import fetch_checkpoint

    local = str(fetch_checkpoint(checkpoint))
    # The held-out rows; a run trained with none (holdout 0) is scored on its training rows, labelled so.
    split = "heldout" if checkpoint_holdout(local) > 0 else "train"
    report = evaluate(local, manifests, limit=limit, max_new_tokens=max_new_tokens, split=split)
    scalars = {k: v for k, v in report.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    update_metrics(checkpoint, {"eval": scalars}, index_root=index_root)
    return report


def loss_curve_png(losses: list[float], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), dpi=100)
    ax = fig.add_subplot()
    ax.plot(range(1, len(losses) + 1), losses, marker="o" if len(losses) < 40 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _resolve_data(config: dict[str, Any], mixture: str | None, root: str) -> dict[str, Any]:
    """A mixture spec URI, or a mix preset name resolved against the root's newest manifests."""
    from flows.mix import MIX_PRESETS, build_mixture, read_mixture, resolve_preset

    if not mixture:
        return config
    if mixture in MIX_PRESETS:
        found, missing = resolve_preset(mixture, root)
        spec = build_mixture(found, MIX_PRESETS[mixture], mixture, missing)
    else:
        spec = read_mixture(mixture)
    return {**config, "manifests": spec["manifests"], "weights": spec["weights"]}


def newest_stage1(root: str) -> str:
    """The newest vocabulary-generation checkpoint in the root's lineage index: where stage 2 starts when the
    config names none (the integration deployment declares `init_from: null`)."""
    from flows.retrain import newest_checkpoint

    record = newest_checkpoint(root, "vocab")
    if record is None:
        raise ValueError(f"vocabulary integration starts from a vocabulary-generation checkpoint: none under {root}; "
                         "set config.init_from")
    return record["checkpoint"]


def scratch_dir(stage: str) -> str:
    """Local scratch for a stage whose checkpoints are published to a remote root: $VARYFLOW_SCRATCH or the
    temporary directory, one folder per flow run (a resumed run finds its own)."""
    import tempfile

    base = os.environ.get("VARYFLOW_SCRATCH") or os.path.join(tempfile.gettempdir(), "varyflow-scratch")
    return os.path.join(base, str(runtime_flow_run.id or "local"), stage)


def train_stage(stage: str, config: dict[str, Any], mixture: str | None, launch: dict[str, Any] | None,
                eval_limit: int | None, eval_max_new_tokens: int, out: str | None) -> dict[str, Any]:
    logger = get_run_logger()
    root = out or default_root()
    cfg = _resolve_data(dict(config), mixture, root)
    if stage == "integrate" and not cfg.get("init_from"):
        cfg["init_from"] = newest_stage1(root)
    if is_uri(str(cfg.get("init_from") or "")):
        from storage.publish import fetch_checkpoint

        cfg["init_from"] = str(fetch_checkpoint(cfg["init_from"]))  # the model loads files
    cfg.setdefault("model", STAGE_MODELS[stage])
    cfg.setdefault("index_root", root)
    remote = is_uri(root)
    # A remote root: train into local scratch, then publish the checkpoint under the root (a pod's folder
    # is gone with the pod).
    cfg.setdefault("out", str(Path(root) / "checkpoints" / stage) if not remote else scratch_dir(stage))
    cfg.update(stage=stage, orchestrator={"name": "prefect", "flow_run_id": str(runtime_flow_run.id) if runtime_flow_run.id else None,
                                          "deployment": runtime_deployment.name})
    trained = run_training(stage, cfg, launch)
    checkpoint = trained["checkpoint"]
    if remote and not is_uri(checkpoint):
        from storage.publish import publish_checkpoint

        run = str(runtime_flow_run.id or "local")
        target = f"{root.rstrip('/')}/checkpoints/{stage}/{run}/{Path(checkpoint).name}"
        publish_checkpoint(checkpoint, target, cfg["index_root"])
        logger.info("published %s to %s", checkpoint, target)
        checkpoint = target
    logger.info("%s checkpoint: %s", stage, checkpoint)
    create_markdown_artifact(location_markdown(f"{stage} checkpoint", checkpoint, f"`varyflow lineage {checkpoint}`"),
                             key=artifact_key("train", stage, "checkpoint"),
                             description=f"{stage} checkpoint (lineage.json beside it)")
    if trained["losses"]:
        png = loss_curve_png(trained["losses"], f"{stage} loss")
        create_markdown_artifact(f"# {stage} loss\n\n![loss curve]({png_data_uri(png)})\n\n"
                                 f"final loss {trained['losses'][-1]:.4f} after {len(trained['losses'])} steps",
                                 key=artifact_key("train", stage, "loss"), description=f"{stage} loss curve")
    report = run_evaluation(stage, checkpoint, cfg["manifests"], eval_limit, eval_max_new_tokens, cfg["index_root"])
    rows = [{"metric": k, "value": round(v, 4) if isinstance(v, float) else v}
            for k, v in report.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    rows += [{"metric": f"{lang}: {k}", "value": round(v, 4) if isinstance(v, float) else v}
             for lang, scores in sorted(report.get("by_lang", {}).items()) for k, v in scores.items()]
    create_table_artifact(rows, key=artifact_key("train", stage, "eval"), description=f"{stage} evaluation, {report.get('split_label', 'all rows')}, on {len(cfg['manifests'])} manifests")
    return {"stage": stage, "checkpoint": checkpoint, "losses": trained["losses"], "metrics": trained["metrics"],
            "eval": {r["metric"]: r["value"] for r in rows}, "manifests": cfg["manifests"]}


def _run_name(stage: str):
    def name() -> str:
        config = runtime_flow_run.parameters.get("config") or {}
        return f"train-{stage}-{config.get('preset', 'paper')}-{config.get('steps', '?')}steps"

    return name


@flow(name="vocabulary_generation", flow_run_name=_run_name("vocab"))
def vocabulary_generation(config: dict[str, Any], mixture: str | None = "vary-tiny", launch: dict[str, Any] | None = None,
                          eval_limit: int | None = 8, eval_max_new_tokens: int = 64, out: str | None = None) -> dict[str, Any]:
    """Stage 1: train Vary-tiny (the new vocabulary network + OPT) on `mixture`, then evaluate."""
    return train_stage("vocab", config, mixture, launch, eval_limit, eval_max_new_tokens, out)


@flow(name="vocabulary_integration", flow_run_name=_run_name("integrate"))
def vocabulary_integration(config: dict[str, Any], mixture: str | None = "vary-base", launch: dict[str, Any] | None = None,
                           eval_limit: int | None = 8, eval_max_new_tokens: int = 64, out: str | None = None) -> dict[str, Any]:
    """Stage 2: Vary-base on the stage-1 vocabulary network (`config["init_from"]`), then evaluate."""
    return train_stage("integrate", config, mixture, launch, eval_limit, eval_max_new_tokens, out)

