"""Which device a process computes on: a --device spec, and under torchrun the process's rank and
GPU. Shared by training, evaluation and the embedding job; imports torch, so only they import it."""

from __future__ import annotations

import os

from .errors import InvalidArgumentError, require

torch = require("torch")


def resolve_device(spec: str = "auto"):
    """'auto' (the GPU when torch sees one, else the CPU), 'cpu', 'cuda' or 'cuda:N'."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise InvalidArgumentError(f"device {spec!r} is not known; expected 'auto', 'cpu', "
                                   "'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError(f"device {spec!r} was asked for, but torch sees no CUDA GPU "
                                   "here; use 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InvalidArgumentError(f"device {spec!r}: torch sees {torch.cuda.device_count()} "
                                   "GPU(s), numbered from 0")
    if dev.type not in ("cpu", "cuda"):
        raise InvalidArgumentError(f"device {spec!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return dev


def dist_info() -> tuple[int, int, int]:
    """(RANK, WORLD_SIZE, LOCAL_RANK) as torchrun sets them; (0, 1, 0) in a plain process."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    try:
        rank, world, local = (int(os.environ.get(n, d)) for n, d in zip(names, ("0", "1", "0")))
    except ValueError:
        raise InvalidArgumentError(
            "RANK / WORLD_SIZE / LOCAL_RANK are " + ", ".join(repr(os.environ.get(n)) for n in names)
            + "; expected integers (torchrun sets them)") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise InvalidArgumentError(f"RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}; expected "
                                   "0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0")
    return rank, world, local


def rank_device(spec: str = "auto"):
    """(rank, world size, device) of this process. One process: `spec` as resolve_device reads
    it. Under torchrun each process takes the GPU of its LOCAL_RANK ('auto' or 'cuda' with a
    GPU), or the CPU ('cpu', or 'auto' without one); a fixed 'cuda:N' would put every rank on one
    GPU, so it is refused."""
    rank, world, local = dist_info()
    if world > 1 and ":" in spec:
        raise InvalidArgumentError(f"device {spec!r} under {world} processes; expected 'auto', "
                                   "'cuda' or 'cpu' (each process takes the GPU of its LOCAL_RANK)")
    dev = resolve_device(spec)  # refuses a device that is not there, before any work
    if dev.type == "cuda":
        dev = torch.device("cuda", local if world > 1 else (dev.index or 0))
        torch.cuda.set_device(dev)
    return rank, world, dev
