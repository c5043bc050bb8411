"""Device placement: `auto` means CUDA when torch sees a GPU, the CPU otherwise."""

from __future__ import annotations

import torch

from forecast.errors import InvalidInput


def resolve_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise InvalidInput("device 'cuda' was asked for but torch sees no GPU; use --device auto or cpu")
    if choice not in {"cpu", "cuda"}:
        raise InvalidInput(f"unknown device {choice!r}; use auto, cpu or cuda")
    return torch.device(choice)
