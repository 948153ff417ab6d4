"""Pull steps of prefect.yaml: where a worker's flow-run process finds the deployments' code.

A worker (process, Docker or Kubernetes) starts each flow run in a directory of its own choosing, then runs
the deployment's pull steps and loads the entrypoint (`flows/render.py:render`) relative to the directory
they leave it in. A fixed path (`/opt/varyflow`) only exists inside an image; this step finds the checkout
the way an operator would expect on any machine that has one.
"""
from __future__ import annotations

import os
from pathlib import Path

# The checkout the running `flows` package was imported from (setup.sh installs it editable, so a worker
# started from the checkout's .venv imports this very file).
INSTALLED_CHECKOUT = Path(__file__).resolve().parents[1]
CHECKOUT_ENV = "VARYFLOW_CHECKOUT"


def checkout_dir(directory: str | None = None) -> Path:
    """The varyflow checkout to run from: `directory` when given, else $VARYFLOW_CHECKOUT (set it in a work
    pool's or deployment's job variables `env`), else the checkout this code was imported from."""
    chosen = directory or os.environ.get(CHECKOUT_ENV) or str(INSTALLED_CHECKOUT)
    path = Path(os.path.expanduser(chosen)).resolve()
    if not (path / "flows" / "render.py").is_file():
        source = "the step's directory" if directory else f"${CHECKOUT_ENV}" if os.environ.get(CHECKOUT_ENV) else "the installed package"
        raise FileNotFoundError(f"{path} (from {source}) is not a varyflow checkout: no flows/render.py there; "
                                f"set {CHECKOUT_ENV} in the work pool's or deployment's job variables env")
    return path


def use_checkout(directory: str | None = None) -> dict[str, str]:
    """Pull step: change into the varyflow checkout (see `checkout_dir`). Returns {"directory": path} for
    later steps."""
    path = checkout_dir(directory)
    os.chdir(path)
    return {"directory": str(path)}
