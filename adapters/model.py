"""The base forecaster: a small MLP over whitened features and neighbour statistics.

It predicts the forward return over the label horizon. Inputs are standardised and the output
rescaled by buffers stored with the checkpoint, so LoRA adapters only ever touch the Linear
layers named in `LORA_TARGET_MODULES`. The base checkpoint is saved with safetensors and is
frozen once trained: continual updates live in adapters.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

# The Linear layers peft's LoRA wraps (names as in `Forecaster.named_modules()`).
LORA_TARGET_MODULES: tuple[str, ...] = ("net.0", "net.2", "net.4")
CHECKPOINT_FILE = "forecaster.safetensors"
SPEC_FILE = "forecaster.json"


@dataclass(frozen=True)
class ForecasterSpec:
    """Shape of the network; saved next to the weights."""

    n_inputs: int
    hidden: tuple[int, ...] = (64, 32)
    version: int = 1


class Forecaster(nn.Module):
    """MLP: standardise → Linear/ReLU stack → Linear(1) → rescale. Output shape (batch,)."""

    def __init__(self, spec: ForecasterSpec) -> None:
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = []
        width = spec.n_inputs
        for h in spec.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.register_buffer("x_mean", torch.zeros(spec.n_inputs))
        self.register_buffer("x_std", torch.ones(spec.n_inputs))
        self.register_buffer("y_scale", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.x_mean) / self.x_std
        return self.net(z).squeeze(-1) * self.y_scale

    def set_scaling(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Fit the input standardisation and output scale from training data."""
        with torch.no_grad():
            self.x_mean.copy_(x.mean(0))
            self.x_std.copy_(x.std(0).clamp_min(1e-8))
            self.y_scale.copy_(y.std().clamp_min(1e-8))


def seed_everything(seed: int) -> torch.Generator:
    """Make torch deterministic for one training run and return a seeded generator."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def save_forecaster(model: Forecaster, folder: Path) -> list[Path]:
    """Write the weights (safetensors) and the spec (JSON); returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / CHECKPOINT_FILE
    spec = folder / SPEC_FILE
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(weights))
    spec.write_text(json.dumps(asdict(model.spec), sort_keys=True))
    return [weights, spec]


def load_forecaster(folder: Path) -> Forecaster:
    """Load a saved base forecaster in eval mode with gradients off (the frozen base)."""
    raw = json.loads((folder / SPEC_FILE).read_text())
    spec = ForecasterSpec(n_inputs=int(raw["n_inputs"]), hidden=tuple(raw["hidden"]),
                          version=int(raw.get("version", 1)))
    model = Forecaster(spec)
    model.load_state_dict(load_file(str(folder / CHECKPOINT_FILE)))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
