"""What every training loop shares: seeding, run folders, logging to ``train.log``, and
one checkpoint dict saved as ``best.pt`` and ``last.pt`` (atomically) and resumed from.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sound2sight.config import Config, config_to_dict, save_config
from sound2sight.io import atomic_torch_save, safe_torch_load

__all__ = [
    "seed_everything",
    "stage_dir",
    "attach_log_file",
    "Checkpointer",
    "cache_root",
    "resolve_device",
]


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch once per entry point; return a seeded generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``cpu``/``cuda``/``cuda:N``; asking for CUDA without a GPU is a clear error."""
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but no CUDA GPU is available")
    return dev


def cache_root(cfg: Config) -> Path:
    """The feature cache folder: ``data.cache_dir``, else $SOUND2SIGHT_CACHE, else ~/.cache."""
    if cfg.data.cache_dir:
        return Path(cfg.data.cache_dir)
    env = os.environ.get("SOUND2SIGHT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "sound2sight"


def stage_dir(run_dir: str | os.PathLike, stage: str, cfg: Config | None = None) -> Path:
    """``run_dir/stage`` (created); writes the resolved ``config.yaml`` at the run's top."""
    run_dir = Path(run_dir)
    out = run_dir / stage
    out.mkdir(parents=True, exist_ok=True)
    if cfg is not None:
        save_config(cfg, run_dir / "config.yaml")
    return out


def attach_log_file(path: str | os.PathLike) -> logging.Handler:
    """Mirror the ``sound2sight`` loggers into ``path`` (append); remove the handler when done."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("sound2sight")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


class Checkpointer:
    """One checkpoint dict per stage, written atomically as ``last.pt`` and ``best.pt``.

    The dict always carries ``config`` (resolved, as a plain mapping) and ``seed``; the
    training loop adds model/optimiser states, step or epoch, and its metric.  Loading
    uses ``weights_only=True``, so only tensors and plain containers are accepted.
    """

    def __init__(self, folder: str | os.PathLike, cfg: Config) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        for stale in [*self.folder.glob(".last.pt.*.tmp"), *self.folder.glob(".best.pt.*.tmp")]:
            stale.unlink(missing_ok=True)  # left by a save that was killed mid-write

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    @property
    def best(self) -> Path:
        return self.folder / "best.pt"

    def save(self, state: dict[str, Any], *, is_best: bool = False) -> None:
        state = {**state, "config": config_to_dict(self.cfg), "seed": self.cfg.seed}
        atomic_torch_save(state, self.last)
        if is_best:
            atomic_torch_save(state, self.best)

    def load_last(self) -> dict[str, Any] | None:
        """The last checkpoint, or ``None`` when there is none to resume from."""
        return safe_torch_load(self.last) if self.last.is_file() else None

    def restore(self, state: dict[str, Any], **objects) -> None:
        """``obj.load_state_dict(state[name])`` for every ``name=obj`` (models, optimisers, ...).

        >>> import tempfile; from sound2sight.config import Config
        >>> ck, m = Checkpointer(tempfile.mkdtemp(), Config()), torch.nn.Linear(2, 2)
        >>> ck.restore({"model": {k: v * 0 for k, v in m.state_dict().items()}}, model=m)
        >>> float(m.weight.detach().abs().sum())
        0.0
        """
        for name, obj in objects.items():
            if name not in state:
                raise KeyError(f"{self.last}: checkpoint has no {name!r} state")
            obj.load_state_dict(state[name])

    def load_best(self) -> dict[str, Any]:
        if not self.best.is_file():
            raise FileNotFoundError(f"{self.best}: no best checkpoint (train this stage first)")
        return safe_torch_load(self.best)
