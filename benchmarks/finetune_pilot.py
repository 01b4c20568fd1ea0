"""Pilot: does fine-tuning a Whisper block (tiny.en, or base) on the CPU lift the frozen ceiling?

    python benchmarks/finetune_pilot.py --data ../shared/data/audio --folds 0,1,2,3,4 --epochs 10

SI-5 folds (``--folds``: each fold's speakers are the test set in turn; 15 % of the other
speakers validate, early stopping after ``--patience`` epochs), one seed.  The frozen encoder's lower part runs once: the output of
block 2 (``states[2]``, the first layer the default head reads) is kept at the full frame
rate (50 frames/s, float16, in memory).  Then per arm a copy of block 3 and a fresh head are
trained, the head reading ``[states[2], block 3's output]`` pooled by 4 exactly like the
default head reads the cached features:

- ``frozen``: block 3 keeps Whisper's weights (the default head's recipe, in this loop);
- ``finetune1``: block 3 is trained too (AdamW, ``--block-lr``), with the head;
- ``lora<r>`` (e.g. ``lora8``): block 3 keeps Whisper's weights, and a rank-``r`` LoRA
  adapter (Hu et al. 2021: ``W x + B A x * alpha / r``, ``B`` zero at the start, alpha = r)
  on each of its four projections (attention qkv and out, the MLP's two) is trained with the
  head (``--lora-lr``);
- ``staged``: as ``finetune1``, but block 3 stays frozen for the first ``--unfreeze-epoch``
  epochs (the head converges first).

``--blocks 2`` adapts blocks 2 and 3 instead (``states[1]`` cached; each arm's treatment
applies to both blocks, the head still reading ``states[2]`` and ``states[3]``).

``--encoder base`` does the same on Whisper base (6 blocks, width 512): the head reads its
middle states 2..5 as the default head does, ``states[2..4]`` are cached and block 5 (the last
middle block) is the one adapted.

Two regularisers apply to every arm of a run, training batches only: ``--time-mask P``
replaces random 10-frame (0.2 s) spans covering about ``P`` of each clip's frames of
``states[2]`` with the clip's mean frame before block 3 (on base, the same spans of every
cached state; SpecAugment-style masking, as wav2vec 2.0 fine-tuning uses); ``--speaker-adv W`` adds a speaker classifier over the
training speakers on the head's embedding behind a gradient-reversal layer (Ganin &
Lempitsky 2015), its cross-entropy weighted ``W``: the head and the block are pushed away
from features that tell the training speakers apart.

Prints and writes ``benchmarks/results/finetune_pilot.json``: per epoch the validation and
test accuracy / macro-F1 and the seconds; the test figures of the best validation epoch;
the peak RSS; a ``"summary"`` of the mean over folds per arm.  A pilot, not yet the issue's
protocol (one seed per run, one block): it measures what an epoch costs on 2 cores and
whether fine-tuning moves SI-5 in the same training loop as the frozen baseline.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sound2sight.voice.model import pool_frames

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "finetune_pilot.json"
POOL = 4
log = logging.getLogger("benchmarks.finetune_pilot")


def lower_states(items, cfg, enc, front, *, batch: int = 16, keep_states=(2,)):
    """``states[k]`` for each ``k`` in ``keep_states`` of each clip, side by side in the
    channel axis: ``(T_i, len(keep_states) * width)`` float16 at the encoder's full rate."""
    from tqdm import tqdm

    from sound2sight.voice.audio import AudioError, load_audio
    from sound2sight.voice.cache import prepare_voice
    from sound2sight.voice.whisper import encoder_frames

    waves, keep = [], []
    for it in tqdm(items, desc="decode", unit="clip"):
        try:
            w = load_audio(
                it.path, sample_rate=cfg.audio.sample_rate, max_seconds=cfg.audio.max_seconds
            )
            waves.append(prepare_voice(w, cfg, name=it.path))
            keep.append(it)
        except (AudioError, OSError, ValueError) as err:
            log.warning("skipped %s", err)
    order = np.argsort([len(w) for w in waves])
    out: list[np.ndarray | None] = [None] * len(waves)
    with torch.inference_mode():
        n_lower = max(keep_states)
        desc = f"blocks 1-{n_lower}"
        for s in tqdm(range(0, len(order), batch), desc=desc, unit="batch"):
            idx = order[s : s + batch]
            n = torch.tensor([len(waves[i]) for i in idx])
            x = torch.zeros(len(idx), int(n.max()))
            for j, i in enumerate(idx):
                x[j, : len(waves[i])] = torch.from_numpy(waves[i])
            lengths = torch.tensor([encoder_frames(int(k)) for k in n])
            states = enc(front(x), lengths, n_blocks=n_lower)
            h = torch.cat([states[k] for k in keep_states], dim=-1)
            for j, i in enumerate(idx):
                out[i] = h[j, : int(lengths[j])].numpy().astype(np.float16)
    return keep, out


def state_layout(layers: int, blocks: int) -> tuple[list[int], int]:
    """Which encoder states to cache, and how many of them the head reads as they are.

    The adapted blocks are the last ``blocks`` middle ones (the middle states are
    ``2 .. layers - 1``, ``select_layers("middle")``); their input state is cached last, after
    the middle states below it.  tiny.en (4 blocks) with 1: ``([2], 1)``; with 2: ``([1], 0)``;
    base (6 blocks) with 1: ``([2, 3, 4], 3)``.
    """
    first_in = layers - 1 - blocks  # the adapted blocks' input state
    middle_below = list(range(2, first_in + 1))
    return sorted({*middle_below, first_in}), len(middle_below)


class LoRALinear(torch.nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``B A`` (``B`` starts at zero)."""

    def __init__(self, base: torch.nn.Linear, rank: int) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.a = torch.nn.Parameter(torch.randn(rank, base.in_features) / base.in_features**0.5)
        self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.a.T) @ self.b.T  # alpha = rank: scale 1


def add_lora(block, rank: int) -> list[torch.nn.Parameter]:
    """Wrap the block's four projections in :class:`LoRALinear`; return the adapters' weights."""
    params = []
    for name in ("qkv", "out", "fc1", "fc2"):
        wrapped = LoRALinear(getattr(block, name), rank)
        setattr(block, name, wrapped)
        params += [wrapped.a, wrapped.b]
    return params


class _Reverse(torch.autograd.Function):
    """Identity forward; the gradient negated (times ``scale``) backward."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def time_mask(x: torch.Tensor, lengths: torch.Tensor, share: float, rng, span: int = 10):
    """Spans of ``span`` frames, about ``share`` of each clip's valid frames, set to the clip's
    mean frame (a copy; padding untouched)."""
    x = x.clone()
    for j, n in enumerate(lengths.tolist()):
        k = int(rng.binomial(n // span, share)) if n > span else 0
        if k == 0:
            continue
        mean = x[j, :n].mean(0)
        for start in rng.integers(0, n - span + 1, size=k):
            x[j, start : start + span] = mean
    return x


class Tuned(torch.nn.Module):
    """Whisper's last middle block(s) (trainable or not) + the default head over the middle
    states.

    The input holds the cached states side by side in the channel axis, the adapted blocks'
    input last; the first ``cached_middle`` of them are middle states the head reads as they
    are (tiny.en, one block: ``states[2]``, both the head's first layer and block 3's input;
    base, one block: ``states[2..4]``, block 5 reading ``states[4]``).
    """

    def __init__(self, blocks, head_cfg, *, width: int = 384, cached_middle: int = 1):
        super().__init__()
        from sound2sight.voice.model import WhisperHeadClassifier

        self.blocks = torch.nn.ModuleList(blocks)
        self.width, self.cached_middle = width, cached_middle
        n_head = cached_middle + len(self.blocks)
        self.head = WhisperHeadClassifier(head_cfg, groups=[(n_head, width)])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.logits_and_embedding(x, lengths)[0]

    def logits_and_embedding(self, x: torch.Tensor, lengths: torch.Tensor):
        t = x.shape[1]
        keep = torch.arange(t)[None, :] < lengths[:, None]  # (B, T)
        cached = list(x.split(self.width, dim=-1))
        states, h = cached[: self.cached_middle], cached[-1]
        for block in self.blocks:
            h = block(h, keep[:, None, None, :])
            states.append(h)
        h = torch.stack(states, dim=1) * keep[:, None, :, None]  # (B, middle states, T, C)
        return self.head.logits_and_embedding(pool_frames(h, keep, POOL))  # pooled as cached


def batches(rows, states, y, size, rng=None, spk=None):
    rows = np.asarray(rows)
    if rng is not None:  # shuffled, then length-sorted within chunks of 8 batches
        rows = rng.permutation(rows)
        chunks = [rows[i : i + size * 8] for i in range(0, len(rows), size * 8)]
        rows = np.concatenate([c[np.argsort([len(states[i]) for i in c])] for c in chunks])
    else:
        rows = rows[np.argsort([len(states[i]) for i in rows])]
    for s in range(0, len(rows), size):
        idx = rows[s : s + size]
        n = torch.tensor([len(states[i]) for i in idx])
        x = torch.zeros(len(idx), int(n.max()), states[idx[0]].shape[1])
        for j, i in enumerate(idx):
            x[j, : n[j]] = torch.from_numpy(states[i].astype(np.float32))
        yield x, n, torch.as_tensor(y[idx]), None if spk is None else torch.as_tensor(spk[idx])


def evaluate(model, rows, states, y) -> dict:
    from sound2sight.labels import EMOTIONS
    from sound2sight.metrics import classification_report

    model.eval()
    preds, truth = [], []
    with torch.inference_mode():
        for x, n, t, _ in batches(rows, states, y, 64):
            preds.append(model(x, n).argmax(1).numpy())
            truth.append(t.numpy())
    r = classification_report(np.concatenate(truth), np.concatenate(preds), labels=EMOTIONS)
    return {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"]}


def run_arm(name, enc, head_cfg, states, y, split, args, speakers=None) -> dict:
    torch.manual_seed(args.seed)
    last = enc.cfg.layers - 1  # the last middle state; its block is enc.blocks[last - 1]
    blocks = torch.nn.ModuleList(copy.deepcopy(b) for b in enc.blocks[last - args.blocks : last])
    train_block = name in ("finetune1", "staged")
    blocks.requires_grad_(train_block)  # (LoRA then freezes the wrapped projections itself)
    adapters = []
    if name.startswith("lora"):
        for b in blocks:
            adapters += add_lora(b, int(name[4:]))
    _, cached_middle = state_layout(enc.cfg.layers, args.blocks)
    model = Tuned(blocks, head_cfg, width=enc.cfg.width, cached_middle=cached_middle)
    groups = [{"params": model.head.parameters(), "lr": args.lr}]
    spk, adversary = None, None
    if args.speaker_adv > 0:  # speaker classifier behind a gradient reversal
        names = sorted({speakers[i] for i in split["train"]})
        index = {s: k for k, s in enumerate(names)}
        spk = np.array([index.get(s, -1) for s in speakers])
        adversary = torch.nn.Linear(head_cfg.embed_dim, len(names))
        groups.append({"params": adversary.parameters(), "lr": args.lr})
    if train_block:
        groups.append({"params": model.blocks.parameters(), "lr": args.block_lr})
    if adapters:
        groups.append({"params": adapters, "lr": args.lora_lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    sched = None
    if args.schedule == "cosine":  # as the project's trainer: cosine over the epochs
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(args.epochs, 1))
    counts = np.bincount(y[split["train"]], minlength=3)
    weights = torch.tensor(counts.sum() / (3 * counts), dtype=torch.float32)
    rng = np.random.default_rng(args.seed)
    history, best = [], None
    for epoch in range(1, args.epochs + 1):
        model.train()
        if name == "staged":  # block 3 frozen until the head has had --unfreeze-epoch epochs
            model.blocks.requires_grad_(epoch > args.unfreeze_epoch)
        t0 = time.perf_counter()
        for x, n, t, s in batches(split["train"], states, y, args.batch, rng, spk):
            if args.time_mask > 0:
                x = time_mask(x, n, args.time_mask, rng)
            logits, emb = model.logits_and_embedding(x, n)
            loss = F.cross_entropy(logits, t, weight=weights)
            if adversary is not None:
                loss = loss + args.speaker_adv * F.cross_entropy(
                    adversary(_Reverse.apply(emb, 1.0)), s
                )
            opt.zero_grad()
            loss.backward()
            opt.step()
        sec = time.perf_counter() - t0
        if sched is not None:
            sched.step()
        row = {
            "epoch": epoch,
            "train_seconds": round(sec, 1),
            "val": evaluate(model, split["val"], states, y),
            "test": evaluate(model, split["test"], states, y),
        }
        history.append(row)
        log.info("%s %s", name, json.dumps(row))
        if best is None or row["val"]["macro_f1"] > best["val"]["macro_f1"]:
            best = row
        elif epoch - best["epoch"] >= args.patience and not (
            name == "staged" and epoch <= args.unfreeze_epoch + 1
        ):  # a staged arm always gets at least two epochs with its block unfrozen
            break
    return {"history": history, "best_by_val": best}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "audio")
    ap.add_argument("--folds", default="0", help="SI-5 test folds, comma list")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--patience", type=int, default=3, help="epochs without val macro-F1 gain")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3, help="head learning rate")
    ap.add_argument("--block-lr", type=float, default=1e-4, help="fine-tuned block learning rate")
    ap.add_argument("--lora-lr", type=float, default=1e-3, help="LoRA adapters' learning rate")
    ap.add_argument("--unfreeze-epoch", type=int, default=4, help="staged: frozen epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--schedule", choices=["none", "cosine"], default="none", help="LR schedule")
    ap.add_argument("--arms", default="frozen,finetune1")
    ap.add_argument("--time-mask", type=float, default=0.0, help="share of frames masked")
    ap.add_argument("--speaker-adv", type=float, default=0.0, help="speaker-adversary weight")
    ap.add_argument(
        "--blocks",
        type=int,
        choices=[1, 2],
        default=1,
        help="Whisper blocks the arms adapt, the last middle ones: tiny.en 1 = block 3 "
        "(states[2] cached), 2 = blocks 2 and 3 (states[1] cached), the head reading states[2] "
        "and states[3] either way; base 1 = block 5 (states[2..4] cached), the head reading the "
        "middle states 2..5",
    )
    ap.add_argument("--encoder", choices=["tiny.en", "base"], default="tiny.en")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    from sound2sight.config import load_config
    from sound2sight.datasets import load_audio_corpus
    from sound2sight.datasets.base import assign_folds, read_folds_csv
    from sound2sight.io import atomic_write_json
    from sound2sight.labels import EMOTIONS
    from sound2sight.train.protocols import fold_split
    from sound2sight.voice.whisper import load_whisper

    t0 = time.perf_counter()
    cfg = load_config(overrides=[f"seed={args.seed}"])
    items = [it for it in load_audio_corpus(args.data).items if it.label]
    items = assign_folds(items, n_folds=5, folds=read_folds_csv(args.data / "folds.csv"))
    enc, front, _ = load_whisper(args.encoder)
    enc.eval()
    keep, _ = state_layout(enc.cfg.layers, args.blocks)
    items, states = lower_states(items, cfg, enc, front, keep_states=keep)
    cache_s = time.perf_counter() - t0
    y = np.array([EMOTIONS.index(it.label) for it in items])
    log.info("states cached in %.0f s (%d clips)", cache_s, len(items))
    head_cfg = copy.deepcopy(cfg.classifier)
    head_cfg.layers = ",".join(str(i) for i in range(enc.cfg.layers - 2))  # every middle state
    folds = [int(f) for f in args.folds.split(",")]
    arm_names = args.arms.split(",")
    per_fold: dict[int, dict] = {}
    speakers = [it.speaker for it in items]
    for fold in folds:
        split_items = fold_split(items, test_fold=fold, cfg=cfg)
        assert [it.path for it in split_items] == [it.path for it in items]
        split = {
            s: np.flatnonzero([it.split == s for it in split_items])
            for s in ("train", "val", "test")
        }
        log.info("fold %d: %s", fold, {k: len(v) for k, v in split.items()})
        per_fold[fold] = {
            a: run_arm(a, enc, head_cfg, states, y, split, args, speakers) for a in arm_names
        }
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # GB (KB on Linux)
    summary = {}
    lines = [f"seed {args.seed}, folds {args.folds}: test at each fold's best validation epoch"]
    for a in arm_names:
        acc = [per_fold[f][a]["best_by_val"]["test"]["accuracy"] for f in folds]
        f1 = [per_fold[f][a]["best_by_val"]["test"]["macro_f1"] for f in folds]
        sec = float(
            np.median([h["train_seconds"] for f in folds for h in per_fold[f][a]["history"]])
        )
        fold_min = (
            float(
                np.median(
                    [sum(h["train_seconds"] for h in per_fold[f][a]["history"]) for f in folds]
                )
            )
            / 60
        )
        summary[a] = {
            "accuracy_mean": float(np.mean(acc)),
            "macro_f1_mean": float(np.mean(f1)),
            "accuracy_per_fold": acc,
            "macro_f1_per_fold": f1,
            "seconds_per_epoch_median": sec,
            "minutes_per_fold_median": round(fold_min, 2),
        }
        lines.append(
            f"{a:10s} accuracy {np.mean(acc):.3f}  macro-F1 {np.mean(f1):.3f}  "
            f"(per fold {' '.join(f'{v:.3f}' for v in acc)}; {sec:.0f} s per training epoch, "
            f"{fold_min:.1f} min per fold)"
        )
    table = "\n".join(lines)
    print(table)
    out = {
        "summary": summary,
        "folds": folds,
        "seed": args.seed,
        "lower_states_seconds": round(cache_s, 1),
        "per_fold": {str(f): v for f, v in per_fold.items()},
        "peak_rss_gb": round(peak, 2),
        "table": table,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "command": "python benchmarks/finetune_pilot.py " + " ".join(argv or sys.argv[1:]),
    }
    print(f"wrote {atomic_write_json(args.out, out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
