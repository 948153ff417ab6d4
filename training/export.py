"""Checkpoints the ecosystem can open: the model code and `auto_map` beside the weights (every training
checkpoint has them), and `varyflow export CKPT --out DIR`, an inference-only folder (config, code,
safetensors with tied tensors written out, tokenizer; no optimizer, data or RNG state)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from training.errors import TrainingError

# The files transformers imports (relatively) to build the model; `hf_vary` is the entry point.
CODE_FILES = ("hf_vary.py", "modeling.py", "vary_tiny.py", "vary_base.py", "vocab_net.py", "errors.py")
_OWN_IMPORT = re.compile(r"^(\s*)from training\.(\w+) import", re.MULTILINE)


def write_code(folder: Path) -> None:
    """The model files with `from training.x import` made relative (`from .x import`)."""
    here = Path(__file__).parent
    for name in CODE_FILES:
        (folder / name).write_text(_OWN_IMPORT.sub(r"\1from .\2 import", (here / name).read_text()))


def export(checkpoint: str, out: str) -> str:
    """Write the inference folder `out` from `checkpoint`; returns `out`."""
    from safetensors.torch import save_file

    from training.checkpoint import TOKENIZER_DIR
    from training.modeling import AUTO_MAP, CONFIG_NAME, WEIGHTS_NAME, load_model

    src, dst = Path(checkpoint), Path(out)
    if not (src / CONFIG_NAME).is_file():
        raise TrainingError(f"{checkpoint} is not a varyflow checkpoint (no {CONFIG_NAME})")
    if dst.exists() and any(dst.iterdir()):
        raise TrainingError(f"{out} exists and is not empty")
    model = load_model(src)
    dst.mkdir(parents=True, exist_ok=True)
    # Every tensor under its own name (a tied lm_head written out too), so no loader has to re-tie.
    tensors = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(dst / WEIGHTS_NAME), metadata={"format": "pt", "model_type": model.model_type})
    config = json.loads((src / CONFIG_NAME).read_text())
    (dst / CONFIG_NAME).write_text(json.dumps({**config, **AUTO_MAP}, indent=2, sort_keys=True))
    write_code(dst)
    if (src / TOKENIZER_DIR).is_dir():
        shutil.copytree(src / TOKENIZER_DIR, dst / TOKENIZER_DIR)  # where `varyflow eval|ocr` look
        shutil.copytree(src / TOKENIZER_DIR, dst, dirs_exist_ok=True)  # and at the top, where AutoTokenizer looks
    return str(dst)
