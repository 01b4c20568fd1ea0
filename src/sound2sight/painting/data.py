"""Data for the GAN stage: paintings at the GAN's side, conditions from the shared space, figures.

>>> import tempfile
>>> path = save_grid(np.zeros((3, 8, 8, 3), np.uint8), f"{tempfile.mkdtemp()}/g.png", cols=2)
>>> Image.open(path).size  # (width, height): 2 columns x 2 rows of 8 px plus 2 px borders
(22, 22)
"""

from __future__ import annotations

import io
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from sound2sight.config import Config
from sound2sight.io import atomic_write_bytes
from sound2sight.labels import EMOTIONS
from sound2sight.painting.model import ConditionBank
from sound2sight.train.common import resolve_device

__all__ = [
    "read_painting",
    "load_art_images",
    "load_align",
    "audio_bank",
    "image_conditions",
    "save_grid",
    "plot_curves",
]

log = logging.getLogger(__name__)


def read_painting(path: str, size: int) -> np.ndarray | None:
    """One image squashed to ``(size, size, 3)`` uint8, or None (logged) when unreadable."""
    try:
        with Image.open(path) as img:
            if img.width * img.height > (Image.MAX_IMAGE_PIXELS or float("inf")):  # not decoded
                raise ValueError(f"{img.width}x{img.height} pixels (possible decompression bomb)")
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, still >= size
            img = img.convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
            return np.asarray(img)
    except Exception as exc:  # noqa: BLE001 - a broken file is reported and skipped
        log.warning("skipping %s: %s", path, exc)
        return None


def load_art_images(
    paths: list[str], *, size: int, workers: int = 2
) -> tuple[torch.Tensor, list[int]]:
    """Decode and squash images to ``size``: uint8 ``(N_ok, 3, size, size)`` and kept indices."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        arrays = list(
            tqdm(
                pool.map(lambda p: read_painting(p, size), paths),
                total=len(paths),
                desc=f"art @{size}px",
                unit="img",
                disable=None,
                leave=False,
            )
        )
    keep = [i for i, a in enumerate(arrays) if a is not None]
    if not keep:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8), keep
    x = torch.from_numpy(np.stack([arrays[i] for i in keep]))  # (N, S, S, 3)
    return x.permute(0, 3, 1, 2).contiguous(), keep  # (N, 3, S, S)


def load_align(run_dir: Path):
    """The trained joint space (``align/best.pt``) and ``align/audio_embeddings.npz``."""
    from sound2sight.models.heads import load_joint_space
    from sound2sight.train.features import load_npz

    need = [run_dir / "align" / "best.pt", run_dir / "align" / "audio_embeddings.npz"]
    for p in need:
        if not p.is_file():
            raise FileNotFoundError(
                f"{p}: the GAN needs the shared-space stage (train align first)"
            )
    return load_joint_space(need[0]), load_npz(need[1])


@torch.no_grad()
def audio_bank(joint, aud: dict, *, splits: tuple[str, ...]) -> ConditionBank:
    """Projected audio embeddings of the clips in ``splits``, grouped by emotion index."""
    keep = np.isin(aud["splits"], splits)
    if not keep.any():
        raise ValueError(f"no audio clips in split(s) {splits} to condition on")
    z = joint.embed_audio(torch.from_numpy(aud["embeddings"][keep]).float())  # (N, 128)
    labels = np.array([EMOTIONS.index(str(x)) for x in aud["labels"][keep]])
    return ConditionBank(z.numpy(), labels)


@torch.no_grad()
def image_conditions(cfg: Config, run_dir: Path, joint, paths: list[str]) -> torch.Tensor:
    """Each painting's own projected image embedding ``(N, 128)``.

    Features come from ``image/features.npz`` where present; the rest are extracted
    (cached by file hash), e.g. the unlabelled paintings.
    """
    from sound2sight.cache import FeatureCache
    from sound2sight.models.image import ImageFeatureExtractor, load_image_encoder
    from sound2sight.train.common import cache_root
    from sound2sight.train.features import load_npz

    known: dict[str, np.ndarray] = {}
    fpath = run_dir / "image" / "features.npz"
    if fpath.is_file():
        f = load_npz(fpath)
        known = dict(zip(f["paths"].tolist(), f["feats"], strict=True))
    missing = [p for p in paths if p not in known]
    if missing:
        log.info("extracting EfficientNet features of %d paintings for conditioning", len(missing))
        model, _ = load_image_encoder(device=resolve_device(cfg.device))
        res = ImageFeatureExtractor(
            model,
            batch_size=cfg.image.batch_size,
            cache=FeatureCache(cache_root(cfg), namespace="image-features"),
        )(missing)
        known.update({str(p): v for p, v in zip(res.paths, res.features, strict=True)})
    feats = np.stack([known.get(p, np.zeros(1280, np.float32)) for p in paths])  # (N, 1280)
    return joint.embed_image(torch.from_numpy(feats).float())  # (N, 128)


def save_grid(images: np.ndarray, path: str | Path, *, cols: int) -> Path:
    """Tile uint8 ``(N, H, W, 3)`` images into a PNG, ``cols`` per row (atomic write)."""
    n, h, w, _ = images.shape
    rows = -(-n // cols)
    canvas = np.full((rows * (h + 2) + 2, cols * (w + 2) + 2, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        canvas[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + c * (w + 2) : 2 + c * (w + 2) + w] = img
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def plot_curves(history: dict[str, list[float]], fd_history: list, path: Path) -> None:
    """Losses, D logits and the checkpoint FD curve of a GAN run, as one PNG (atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def smooth(v: list[float]) -> tuple[np.ndarray, np.ndarray]:
        w = max(1, len(v) // 50)  # moving average over ~2% of the run
        return np.arange(w, len(v) + 1), np.convolve(v, np.ones(w) / w, mode="valid")

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
    for key, ax in (("loss_d", 0), ("loss_g", 0), ("logit_real", 1), ("logit_fake", 1)):
        axes[ax].plot(*smooth(history[key]), label=key)
    if fd_history:
        axes[2].plot(
            [s for s, _ in fd_history],
            [f for _, f in fd_history],
            marker="o",
            label="FD-EffNet (Lite0, EMA G)",
        )
    axes[0].set_title("losses")
    axes[1].set_title("D logits (mean)")
    axes[2].set_title("FD at checkpoints")
    for ax in axes:
        ax.set_xlabel("generator step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
