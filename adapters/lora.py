"""LoRA adapters on the frozen base forecaster (peft), their checksum, and merging for serving.

A version in the registry is one full adapter over the *base* checkpoint (not a delta over the
previous version): a new update starts from the deployed adapter's weights, so base + adapter_k
is exactly the deployed model k. The serving path never runs peft: `merged_forecaster` folds
W + scale·B·A into a plain `Forecaster` copy.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from peft.utils import load_peft_weights
from torch import nn

from adapters.model import LORA_TARGET_MODULES, Forecaster

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


class AdapterError(Exception):
    """An adapter on disk is missing, malformed, or does not fit the base model."""


def lora_config(rank: int, alpha: float) -> LoraConfig:
    """The LoRA config every version uses: the declared target modules, no dropout."""
    return LoraConfig(r=int(rank), lora_alpha=float(alpha), lora_dropout=0.0,
                      target_modules=list(LORA_TARGET_MODULES), bias="none",
                      init_lora_weights=True)


def attach_lora(base: Forecaster, rank: int, alpha: float,
                init: dict[str, torch.Tensor] | None = None) -> PeftModel:
    """A trainable LoRA model over a private copy of `base` (the base stays frozen and untouched).

    With `init` (an adapter state dict of the same rank) training continues from those weights;
    otherwise B = 0 and the adapter is an exact no-op.
    """
    model = get_peft_model(copy.deepcopy(base), lora_config(rank, alpha))
    if init is not None:
        set_lora_state(model, init)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    model.eval()  # no dropout, no batch-norm: eval mode is the training mode too
    return model


def lora_params(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The trainable LoRA parameters, in a fixed (name-sorted) order."""
    return sorted(((n, p) for n, p in model.named_parameters() if "lora_" in n),
                  key=lambda kv: kv[0])


def lora_state(model: PeftModel) -> dict[str, torch.Tensor]:
    """The adapter tensors as peft saves them (keys without the adapter name), cloned, CPU."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().contiguous().clone()
            for k, v in get_peft_model_state_dict(model).items()}


def set_lora_state(model: PeftModel, state: dict[str, torch.Tensor]) -> None:
    """Load adapter tensors into `model`; AdapterError if keys or shapes do not fit."""
    own = {k: v.shape for k, v in lora_state(model).items()}
    if set(own) != set(state):
        raise AdapterError(f"adapter keys do not fit the model (missing "
                           f"{sorted(set(own) - set(state))[:3]}, extra "
                           f"{sorted(set(state) - set(own))[:3]})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k]):
            raise AdapterError(f"adapter tensor {k} has shape {tuple(v.shape)}, model "
                               f"{tuple(own[k])}")
    set_peft_model_state_dict(model, state)


def tensor_checksum(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the canonical tensor contents: sorted keys, dtype, shape, raw bytes."""
    h = hashlib.sha256(b"lora/v1")
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_adapter(model: PeftModel, folder: Path) -> list[Path]:
    """Write the adapter in peft's format (adapter_model.safetensors + adapter_config.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    return [folder / ADAPTER_WEIGHTS, folder / ADAPTER_CONFIG]


def load_adapter_state(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read an adapter folder: (tensors, config dict); AdapterError if unreadable."""
    try:
        cfg = json.loads((folder / ADAPTER_CONFIG).read_text())
        state = load_peft_weights(str(folder), device="cpu")
    except Exception as err:  # safetensors/json raise many types on a bad file
        raise AdapterError(f"{folder}: cannot read adapter ({type(err).__name__}: {err})") \
            from None
    return {k: v.contiguous() for k, v in state.items()}, cfg


def merged_forecaster(model: PeftModel) -> Forecaster:
    """A plain Forecaster with the adapter folded into its Linear weights, eval, no grads."""
    merged = copy.deepcopy(model).merge_and_unload()
    if not isinstance(merged, Forecaster):
        raise AdapterError(f"merge gave {type(merged).__name__}, expected Forecaster")
    merged.eval()
    for p in merged.parameters():
        p.requires_grad_(False)
    return merged


def build_serving_model(base: Forecaster, state: dict[str, torch.Tensor] | None, rank: int,
                        alpha: float) -> Forecaster:
    """Base + adapter merged into a plain Forecaster (the base itself when `state` is None)."""
    if state is None:
        out = copy.deepcopy(base)
        out.eval()
        for p in out.parameters():
            p.requires_grad_(False)
        return out
    return merged_forecaster(attach_lora(base, rank, alpha, init=state))
