"""What every Vary model shares: how it is saved and loaded (`save_pretrained` / `from_pretrained`:
config.json with `auto_map` + model.safetensors), what its data pipeline must feed it (`DataSpec`), and
the model classes by type (`model_classes`). Building one from a `TrainConfig` is training.build's job."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from training.errors import TrainingError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
AUTO_MAP = {"auto_map": {"AutoConfig": "hf_vary.VaryConfig", "AutoModel": "hf_vary.VaryForOCR"},
            "architectures": ["VaryForOCR"]}


@dataclass(frozen=True)
class DataSpec:
    layout: str  # "opt": image tokens then target (stage 1); "chat": Qwen chat template with <img> pads (stage 2)
    image_size: int  # SAM branch input side
    clip_size: int | None  # CLIP branch input side, None when the model has no CLIP tower
    num_image_tokens: int


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_from_dict(cls: type, d: dict[str, Any]) -> Any:
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        value = d[f.name]
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        if isinstance(value, dict) and sub is not None and dataclasses.is_dataclass(sub()):
            value = config_from_dict(type(sub()), value)
        kwargs[f.name] = value
    return cls(**kwargs)


class VaryModel(nn.Module):
    model_type: ClassVar[str] = ""
    config_class: ClassVar[type] = object

    def save_pretrained(self, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Write config.json and model.safetensors. `state_dict` lets a ZeRO-3 caller pass gathered weights."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # `auto_map` names the classes transformers builds from the code training.export.write_code puts
        # beside the weights (AutoModel.from_pretrained(directory, trust_remote_code=True)).
        (directory / CONFIG_NAME).write_text(json.dumps(
            {"model_type": self.model_type, "config": config_to_dict(self.config), **AUTO_MAP}, indent=2, sort_keys=True))
        state = self.state_dict() if state_dict is None else state_dict
        # Tied tensors (OPT's lm_head and embeddings) are stored once; safetensors refuses shared storage.
        seen: dict[tuple[int, int], str] = {}
        tensors: dict[str, torch.Tensor] = {}
        for name, t in state.items():
            key = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.device.type != "meta" else (id(t), 0)
            if key in seen and t.numel() > 0:
                continue
            seen[key] = name
            tensors[name] = t.detach().contiguous().cpu()
        save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": "pt", "model_type": self.model_type})

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "VaryModel":
        return load_model(directory, expect=cls)


def read_model_config(directory: str | Path) -> tuple[str, dict[str, Any]]:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise TrainingError(f"{directory} is not a varyflow checkpoint (no {CONFIG_NAME})")
    d = json.loads(path.read_text())
    if d.get("model_type") not in model_classes():
        raise TrainingError(f"{path}: unknown model_type {d.get('model_type')!r}")
    return d["model_type"], d["config"]


def load_model(directory: str | Path, expect: type | None = None) -> VaryModel:
    from safetensors.torch import load_file

    model_type, cfg_dict = read_model_config(directory)
    klass = model_classes()[model_type]
    if expect is not None and expect is not VaryModel and not issubclass(klass, expect):
        raise TrainingError(f"{directory} holds a {model_type}, not a {expect.model_type}")
    model = klass(config_from_dict(klass.config_class, cfg_dict))
    state = load_file(str(Path(directory) / WEIGHTS_NAME))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {k for k in missing if _is_tied(model, k)}
    if set(missing) - tied or unexpected:
        raise TrainingError(f"{directory}: weights do not match the config (missing {sorted(set(missing) - tied)[:3]}, "
                            f"unexpected {sorted(unexpected)[:3]})")
    return model


def _is_tied(model: nn.Module, key: str) -> bool:
    return key.endswith("lm_head.weight") and getattr(getattr(model, "llm", None), "config", None) is not None \
        and model.llm.config.tie_word_embeddings


def model_classes() -> dict[str, type[VaryModel]]:
    from training.vary_base import VaryBase, VaryToy
    from training.vary_tiny import VaryTiny

    return {"vary_tiny": VaryTiny, "vary_base": VaryBase, "vary_toy": VaryToy}
