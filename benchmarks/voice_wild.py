"""Voices in the wild: what the shipped voice model does on recordings unlike CREMA-D.

    python benchmarks/voice_wild.py --data ../shared/data/audio

Scores the shipped speaker-normalised head (``voice-cremad-tiny-speaker``, trained on 41 + 7
CREMA-D actors only) on the speakers it never saw: 13 held-out CREMA-D actors and the
never-seen corpora RAVDESS, TESS and SAVEE, and beside it the head without speaker
normalisation (``voice-cremad-tiny``):

- one recording (what the pipeline does without a calibration, the ``shipped`` figure):
  each clip standardised by ``speaker.calibrate`` of that clip alone, i.e. the training
  frames' statistics unless the clip lies far beyond what an emotion does;
- training statistics: every clip standardised by the training frames' statistics;
- calibrated: a speaker's statistics estimated from ``k`` of their *other* clips (3 or 10),
  either the corpus's natural mix of emotions (``mixed``) or all of one emotion
  (``angry`` / ``happy`` / ``sad``: what a person at a microphone may well record), by

  - ``calibrate``: :func:`sound2sight.voice.speaker.calibrate` (James-Stein shrinkage towards the
    training statistics), what ``Sound2Sight.calibrate_to_speaker`` does;
  - ``page``: the same on ``k - 1`` other clips plus the scored clip itself, what the web
    page does from a session's ``k``-th recording on;
  - ``plain``: the clips' own mean and standard deviation (the calibration before issue 21);
  - ``shrink``: plain moments blended with the training ones, weight ``k / (k + --shrink)``;
  - ``neutral``: emotion-neutral statistics (the emotion mix read by the model itself,
    ``--iterations`` rounds, starting from the training statistics);
  - ``oracle``: the same with the clips' true labels (a diagnostic, not a method).

  Each calibrated score is taken on the speaker's clips outside the calibration set (at most
  ``--max-eval`` of them, the same for every arm), ``--draws`` random calibration sets per
  speaker, next to the one-recording score on the very same clips (``delta``).

Every clip is read as each model listens (``classifier.listen``: the shipped speaker
head hears each clip with its noise floor raised to 25 dB under the voice where it is lower,
``floor25``; ``voice-cremad-tiny`` hears the clip as recorded);
``--view`` reads both heads' clips through one view instead (``''``: as recorded).

Writes ``benchmarks/results/voice_wild.json``: a top-level ``"summary"`` (the refused share of
the shared pool, read from ``benchmarks/results/speech_refusals.json``, which
``python benchmarks/speech_refusals.py --data ../shared/data/audio --before c55c3cd --faults``
writes, and ``--refusals-only`` re-reads alone; the shipped model's accuracy per corpus on one recording; calibrated with 3 and 10
mixed clips; the worst of the three one-emotion 3-clip sets) and every arm with per-class
recall.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sound2sight.voice.speaker import SpeakerStats, speaker_stats, standardise
from sound2sight.voice.speaker import _valid as valid_frames

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "voice_wild.json"
REFUSALS = REPO / "benchmarks" / "results" / "speech_refusals.json"
CORPORA = {"CREMA-D": "cremad_heldout", "RAVDESS": "ravdess", "TESS": "tess", "SAVEE": "savee"}
ESTIMATORS = ("calibrate", "page", "plain", "shrink", "neutral", "oracle")

log = logging.getLogger("benchmarks.voice_wild")


def _recall(pred: np.ndarray, y: np.ndarray, n_classes: int) -> list[float | None]:
    return [float((pred[y == k] == k).mean()) if (y == k).any() else None for k in range(n_classes)]


class Scorer:
    """The head's predictions on features standardised by given statistics."""

    def __init__(self, head, population, prior, moments, args):
        self.head, self.population, self.prior, self.moments = head, population, prior, moments
        self.shrink, self.iterations = args.shrink, args.iterations

    def predict(self, x: np.ndarray, stats) -> np.ndarray:
        from sound2sight.voice.train import predict

        return predict(self.head, standardise(x, stats))[0]

    def stats(self, estimator: str, x_cal: np.ndarray, y_cal: np.ndarray):
        """A speaker's statistics from calibration clips ``x_cal`` (one window each)."""
        from sound2sight.voice.speaker import calibrate

        if estimator == "calibrate":  # what the pipeline does
            return calibrate(list(x_cal[:, None]), self.population, self.prior)
        if estimator == "plain":
            return speaker_stats(x_cal)
        if estimator == "shrink":
            return shrink_fixed(speaker_stats(x_cal), self.population, self.shrink)
        if estimator == "oracle":
            onehot = np.eye(len(self.moments.mean))[y_cal]
            return neutral_stats(x_cal, onehot, self.moments)
        if estimator == "neutral":
            stats = self.population
            for _ in range(self.iterations):
                stats = neutral_stats(x_cal, self.predict(x_cal, stats), self.moments)
            return stats
        raise ValueError(f"unknown estimator {estimator!r}")


# --- the arms that lost (kept so that their figures can be reproduced) -----------------------
#
# ``neutral_stats`` asks what the speaker's statistics would be had they recorded every
# emotion the way the training speakers did: in speaker-standardised space each emotion ``k``
# has its own frame moments ``E[z | k]`` and ``E[z^2 | k]`` (``ClassMoments``, measured on the
# training speakers), so clips with emotion mix ``pi`` have raw frames ``x = mu + sigma * z``
# with ``E[x] = mu + sigma * m1`` and ``Var[x] = sigma^2 * (m2 - m1^2)``, where
# ``m1 = sum_k pi_k E[z | k]`` and ``m2 = sum_k pi_k E[z^2 | k]``; solved for ``mu`` and
# ``sigma`` per layer and channel.  ``pi`` comes from the model's own answers.


@dataclass(frozen=True)
class ClassMoments:
    """Per-emotion frame moments ``(classes, layers, channels)`` of speaker-standardised
    features: ``mean`` = E[z | k], ``square`` = E[z^2 | k], over the training speakers."""

    mean: np.ndarray
    square: np.ndarray


def _frame_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Sum and sum of squares ``(L, C)`` over the valid frames of ``x`` ``(N, L, T, C)``."""
    frames = x.transpose(0, 2, 1, 3)[valid_frames(x)].astype(np.float64)  # (n, L, C)
    return frames.sum(0), np.square(frames).sum(0), len(frames)


def class_moments(
    features: np.ndarray, labels: np.ndarray, speakers: Sequence[str], n_classes: int
) -> ClassMoments:
    """:class:`ClassMoments` of labelled clips ``(N, L, T, C)``, each speaker standardised by
    their own statistics (the way a ``speaker_norm`` head is trained)."""
    x = np.asarray(features)
    y, keys = np.asarray(labels), np.asarray(list(speakers))
    shape = (n_classes, x.shape[1], x.shape[3])
    total, square, count = np.zeros(shape), np.zeros(shape), np.zeros(n_classes)
    for key in np.unique(keys):
        rows = np.flatnonzero(keys == key)
        z = standardise(x[rows], speaker_stats(x[rows])).astype(np.float32)
        for k in range(n_classes):
            sel = np.flatnonzero(y[rows] == k)
            if len(sel):
                t, q, n = _frame_moments(z[sel])
                total[k] += t
                square[k] += q
                count[k] += n
    if (count == 0).any():
        raise ValueError(f"class moments: no frames of class(es) {np.flatnonzero(count == 0)}")
    return ClassMoments(
        (total / count[:, None, None]).astype(np.float32),
        (square / count[:, None, None]).astype(np.float32),
    )


def neutral_stats(
    features: np.ndarray, posteriors: np.ndarray, moments: ClassMoments
) -> SpeakerStats:
    """Emotion-neutral :class:`SpeakerStats` of one speaker's clips ``(N, L, T, C)`` whose
    emotions are believed to be ``posteriors`` ``(N, classes)`` (each row sums to 1)."""
    x = np.asarray(features)
    p = np.asarray(posteriors, np.float64)
    if p.shape != (len(x), len(moments.mean)):
        raise ValueError(f"posteriors {p.shape} for {len(x)} clips of {len(moments.mean)} classes")
    total, square, n = _frame_moments(x)
    if n < 2:
        raise ValueError("speaker statistics need at least two frames of speech")
    frames = valid_frames(x).sum(1).astype(np.float64)  # (N,) each clip's frames
    pi = (p * frames[:, None]).sum(0) / frames.sum()  # the frames' emotion mix
    m1 = np.tensordot(pi, moments.mean, axes=1)  # (L, C)
    m2 = np.tensordot(pi, moments.square, axes=1)
    var_z = np.maximum(m2 - np.square(m1), 1e-3)
    mean_raw = total / n
    var_raw = np.maximum(square / n - np.square(mean_raw), 0.0)
    std = np.maximum(np.sqrt(var_raw / var_z), 1e-3)
    mean = mean_raw - std * m1
    return SpeakerStats(mean.astype(np.float32), std.astype(np.float32), len(x), n)


def shrink_fixed(stats, population, strength: float):
    """``stats`` of ``n`` clips blended with ``population``: moments weighted ``n / (n + strength)``."""
    from sound2sight.voice.speaker import blend_stats

    w = stats.n_clips / (stats.n_clips + strength)
    return blend_stats([stats, population], [w, 1 - w], n_clips=stats.n_clips, n_frames=0)


def calibration_sets(y: np.ndarray, k: int, mix: str, rng: np.random.Generator, max_eval: int):
    """``(calibration rows, evaluation rows)`` of one speaker's clips, or None when the
    speaker has too few clips of the emotion asked for."""
    from sound2sight.labels import EMOTIONS

    rows = np.arange(len(y))
    pool = rows if mix == "mixed" else rows[y == EMOTIONS.index(mix)]
    if len(pool) < k or len(rows) - k < 3:
        return None
    cal = rng.choice(pool, size=k, replace=False)
    rest = np.setdiff1d(rows, cal)
    return cal, rng.permutation(rest)[:max_eval]


def refused_share() -> float | None:
    """The speech check's refused share of the shared pool, from speech_refusals.json."""
    if not REFUSALS.exists():
        return None
    return round(json.loads(REFUSALS.read_text())["summary"]["after"]["as recorded"]["share"], 4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "audio")
    ap.add_argument(
        "--model",
        default="voice-cremad-tiny-speaker",
        help="a shipped model's name, or a folder build_shipped wrote (e.g. runs/voice_base/seed0)",
    )
    ap.add_argument("--baseline", default="voice-cremad-tiny", help="'' to skip")
    ap.add_argument("--ks", default="3,10", help="calibration set sizes")
    ap.add_argument("--draws", type=int, default=3, help="calibration sets per speaker and arm")
    ap.add_argument("--max-eval", type=int, default=60, help="evaluation clips per speaker")
    ap.add_argument("--shrink", type=float, default=10.0, help="'shrink': prior strength in clips")
    ap.add_argument("--iterations", type=int, default=3, help="'neutral': rounds")
    ap.add_argument("--estimators", default=",".join(ESTIMATORS))
    ap.add_argument(
        "--no-single",
        action="store_true",
        help="skip the one-recording score (each clip calibrated on itself alone, as the "
        "pipeline reads a recording without a calibration; one call per clip)",
    )
    ap.add_argument(
        "--refusals-only",
        action="store_true",
        help="only re-read the refused share from speech_refusals.json into --out's summary "
        "(after a change to the speech check alone; the model's figures are kept)",
    )
    ap.add_argument(
        "--view",
        default=None,
        help="read every clip through this view of sound2sight.voice.cache.alter_voice, e.g. "
        "noise40 (white noise 40 dB under the voice), '' as recorded; default: each model's own "
        "listening view (classifier.listen), as the pipeline reads a recording",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from sound2sight.io import atomic_write_json

    if args.refusals_only:
        out = json.loads(args.out.read_text())
        out["summary"]["refused_share_shared_pool"] = refused_share()
        print(f"refused share of the shared pool: {out['summary']['refused_share_shared_pool']}")
        print(f"wrote {atomic_write_json(args.out, out)}")
        return 0

    from sound2sight.datasets import load_audio_corpus
    from sound2sight.labels import EMOTIONS
    from sound2sight.voice.cache import listening_view, load_voice_features
    from sound2sight.voice.pretrained import load_folder, load_shipped
    from sound2sight.voice.speaker import standardise_alone
    from sound2sight.voice.train import predict

    t0 = time.perf_counter()

    def load(name: str):
        return load_folder(name) if Path(name).is_dir() else load_shipped(name)

    head, cfg, card = load(args.model)
    if not cfg.classifier.speaker_norm:
        raise SystemExit(f"{args.model}: not a speaker-normalised model (classifier.speaker_norm)")
    base = load(args.baseline) if args.baseline else None
    items = [it for it in load_audio_corpus(args.data).items if it.label]
    view = listening_view(cfg) if args.view is None else args.view  # as the model listens
    ok, x_all = load_voice_features(items, cfg, view=view)
    y_all = np.array([EMOTIONS.index(it.label) for it in ok])
    spk_all = np.array([it.speaker for it in ok])
    seen = set(card["data"]["speakers"]["train"]) | set(card["data"]["speakers"]["val"])
    xb_all = x_all
    if base is not None:
        seen |= set(base[2]["data"]["speakers"]["train"]) | set(base[2]["data"]["speakers"]["val"])
        bview = listening_view(base[1]) if args.view is None else args.view
        if bview != view:  # the baseline read as it listens too
            ok_b, xb_all = load_voice_features(ok, base[1], view=bview)
            if len(ok_b) != len(ok):
                raise SystemExit(f"{bview}: some clips failed through the baseline's view")
    population = head.population_stats()
    prior = head.shrink_prior()
    if prior is None:
        raise SystemExit(f"{args.model}: the head holds no ShrinkPrior (saved before it existed)")
    train = np.isin(spk_all, card["data"]["speakers"]["train"])
    moments = class_moments(x_all[train], y_all[train], spk_all[train], len(EMOTIONS))
    scorer = Scorer(head, population, prior, moments, args)
    ks = [int(k) for k in args.ks.split(",")]
    estimators = [e for e in args.estimators.split(",") if e]
    mixes = ["mixed", *EMOTIONS]
    n_cls = len(EMOTIONS)

    corpora: dict[str, dict] = {}
    for corpus in CORPORA:
        sel = np.array([it.corpus == corpus and it.speaker not in seen for it in ok])
        if not sel.any():
            log.warning("%s: no unseen speakers in %s", corpus, args.data)
            continue
        x, y, spk = x_all[sel], y_all[sel], spk_all[sel]
        r: dict = {"clips": int(sel.sum()), "speakers": int(len(np.unique(spk)))}
        p_un = scorer.predict(x, population).argmax(1)
        r["training_statistics"] = {
            "accuracy": float((p_un == y).mean()),
            "recall": _recall(p_un, y, n_cls),
        }
        if not args.no_single:  # each clip calibrated on itself alone: the pipeline's way
            alone = standardise_alone(x, population, scorer.prior)
            p_1 = predict(head, alone)[0].argmax(1)
            r["single_recording"] = {
                "accuracy": float((p_1 == y).mean()),
                "recall": _recall(p_1, y, n_cls),
            }
            p_un = p_1  # the reference for the calibrated arms: what the pipeline reads
        if base is not None:
            p_b = predict(base[0], xb_all[sel])[0].argmax(1)
            r["baseline_uncalibrated"] = {
                "model": args.baseline,
                "accuracy": float((p_b == y).mean()),
                "recall": _recall(p_b, y, n_cls),
            }
        arms: dict[str, dict] = {}
        for k in ks:
            for mix in mixes:
                right = {e: [] for e in estimators}
                preds = {e: [] for e in estimators}
                truth, right_un = [], []
                skipped = 0
                for s in np.unique(spk):
                    rows = np.flatnonzero(spk == s)
                    for d in range(args.draws):
                        rng = np.random.default_rng([d, k, mixes.index(mix), len(rows)])
                        split = calibration_sets(y[rows], k, mix, rng, args.max_eval)
                        if split is None:
                            skipped += 1
                            continue
                        cal, ev = rows[split[0]], rows[split[1]]
                        truth.append(y[ev])
                        right_un.append(p_un[ev] == y[ev])
                        for e in estimators:
                            if e == "page":  # k - 1 earlier recordings and this one
                                p = np.array(
                                    [
                                        scorer.predict(
                                            x[[i]],
                                            scorer.stats(
                                                "calibrate", x[np.append(cal[: k - 1], i)], None
                                            ),
                                        )[0].argmax()
                                        for i in ev
                                    ]
                                )
                            else:
                                stats = scorer.stats(e, x[cal], y[cal])
                                p = scorer.predict(x[ev], stats).argmax(1)
                            preds[e].append(p)
                            right[e].append(p == y[ev])
                if not truth:
                    continue
                yt = np.concatenate(truth)
                un = float(np.concatenate(right_un).mean())
                for e in estimators:
                    acc = float(np.concatenate(right[e]).mean())
                    arms[f"{mix}_k{k}_{e}"] = {
                        "mix": mix,
                        "k": k,
                        "estimator": e,
                        "accuracy": acc,
                        "uncalibrated_same_clips": un,
                        "delta": acc - un,
                        "recall": _recall(np.concatenate(preds[e]), yt, n_cls),
                        "evaluations": int(len(yt)),
                        "sets_skipped": skipped,
                    }
        r["arms"] = arms
        corpora[corpus] = r
        log.info("%s done (%.0f s)", corpus, time.perf_counter() - t0)

    # the table: uncalibrated, then each estimator's mixed / worst one-emotion deltas
    lines = []
    hdr = f"{'arm':24s}" + "".join(f"{c:>16s}" for c in corpora)
    lines += [
        f"accuracy on unseen speakers ({args.model}); calibrated: (delta vs one recording, on the same clips)",
        hdr,
    ]
    if base is not None:
        lines.append(
            f"{'baseline ' + args.baseline:24s}"
            + "".join(f"{r['baseline_uncalibrated']['accuracy']:16.3f}" for r in corpora.values())
        )
    lines.append(
        f"{'training statistics':24s}"
        + "".join(f"{r['training_statistics']['accuracy']:16.3f}" for r in corpora.values())
    )
    if not args.no_single:
        lines.append(
            f"{'one recording (shipped)':24s}"
            + "".join(f"{r['single_recording']['accuracy']:16.3f}" for r in corpora.values())
        )
    for k in ks:
        for e in estimators:
            for mix in [*mixes, "worst one-emotion"]:
                cells = []
                for r in corpora.values():
                    if mix == "worst one-emotion":
                        a = [r["arms"].get(f"{m}_k{k}_{e}") for m in EMOTIONS]
                        a = [v for v in a if v]
                        v = min(a, key=lambda v: v["delta"]) if a else None
                    else:
                        v = r["arms"].get(f"{mix}_k{k}_{e}")
                    cells.append(
                        f"{v['accuracy']:8.3f} ({v['delta']:+.3f})" if v else f"{'-':>16s}"
                    )
                lines.append(f"{f'k={k} {e} {mix}':24s}" + "".join(f"{c:>16s}" for c in cells))
    table = "\n".join(lines)
    print(table)

    def per_corpus(fn):
        return {CORPORA[c]: fn(r) for c, r in corpora.items()}

    default = estimators[0]  # the first: by default the pipeline's calibration

    def worst(r, k):
        a = [r["arms"].get(f"{m}_k{k}_{default}") for m in EMOTIONS]
        a = [v for v in a if v]
        return round(min(v["accuracy"] for v in a), 4) if a else None

    summary = {
        "refused_share_shared_pool": refused_share(),
        "model": args.model,
        **({"view": view} if view else {}),
        "calibration": default,
        "shipped": per_corpus(
            lambda r: round(r.get("single_recording", r["training_statistics"])["accuracy"], 4)
        ),
        "shipped_training_statistics": per_corpus(
            lambda r: round(r["training_statistics"]["accuracy"], 4)
        ),
        **{
            f"calibrated_k{k}": per_corpus(
                lambda r, k=k: round(r["arms"][f"mixed_k{k}_{default}"]["accuracy"], 4)
            )
            for k in ks
        },
        "calibrated_k3_one_emotion_worst": per_corpus(lambda r: worst(r, 3)),
        "calibrated_k3_one_emotion_worst_delta": per_corpus(
            lambda r: round(
                min(
                    r["arms"][f"{m}_k3_{default}"]["delta"]
                    for m in EMOTIONS
                    if f"{m}_k3_{default}" in r["arms"]
                ),
                4,
            )
        ),
    }
    out = {
        "summary": summary,
        "corpora": corpora,
        "classes": list(EMOTIONS),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "table": table,
        "seconds": round(time.perf_counter() - t0, 1),
        "command": "python benchmarks/voice_wild.py " + " ".join(argv or sys.argv[1:]),
    }
    print(json.dumps(summary, indent=1))
    print(f"wrote {atomic_write_json(args.out, out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
