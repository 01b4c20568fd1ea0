"""How many real speech clips the speech check refuses, before and after a change to it.

Every clip of the shared pool (RAVDESS, TESS, SAVEE, CREMA-D: 6,016 acted utterances, all
of them speech) goes through :func:`sound2sight.voice.vad.extract_speech` with the pipeline's
settings, as the checked-out code has it ("after") and as a git revision had it
("before", ``--before REV``, default ``HEAD``: that revision's ``src/sound2sight/voice/vad.py``
loaded beside the current one; ``--before REV1,REV2`` adds one arm per revision, the first
called "before", the others by their revision).  Each clip is also checked with a DC
offset and with 50 Hz hum added (``--faults``), the faults cheap microphones add, and
played 1.25x faster, a major third higher (a higher voice than the pool's; no hearing of
the speech check was chosen on these, though its "a third lower" hearing undoes this very
shift).  Every clip still refused is listed with the reason.

Usage::

    python benchmarks/speech_refusals.py --data ../shared/data/audio --before 'HEAD~1'
    python benchmarks/speech_refusals.py --data ../shared/data/audio \
        --before c55c3cd,d0796f0 --faults

Prints a table and writes ``benchmarks/results/speech_refusals.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly
from tqdm.auto import tqdm

from sound2sight.io import atomic_write_json

REPO = Path(__file__).resolve().parents[1]
SR = 16000


def load_revision(rev: str):
    """``sound2sight.voice.vad`` as it was at git revision ``rev`` (a module of its own)."""
    for path in ("src/sound2sight/voice/vad.py", "src/sound2sight/vad.py"):  # before issue 22
        found = subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=REPO, capture_output=True, text=True
        )
        if found.returncode == 0:
            src = found.stdout
            break
    else:
        raise SystemExit(f"{rev}: no vad.py in src/sound2sight/voice/ or src/sound2sight/")
    spec = importlib.util.spec_from_loader(f"vad_{rev.replace('~', '_')}", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    import sound2sight.voice.audio

    old = {"sound2sight.audio": sound2sight.voice.audio}  # where a revision before issue 22
    added = [k for k in old if k not in sys.modules]  # imports the front end from
    sys.modules.update({k: old[k] for k in added})
    try:
        exec(compile(src, f"{rev}:vad.py", "exec"), module.__dict__)  # noqa: S102 - our own file
    finally:
        for k in added:
            del sys.modules[k]
    return module


def faults(wave: np.ndarray) -> dict[str, np.ndarray]:
    rms = float(np.sqrt(np.mean(wave**2))) if wave.size else 0.0
    n = np.arange(len(wave)) / SR
    return {
        "as recorded": wave,
        "dc offset 0.1": wave + np.float32(0.1),
        "50 Hz hum (1x voice RMS)": wave + (rms * np.sin(2 * np.pi * 50 * n)).astype(np.float32),
        # a higher voice (a child's, a strained one): 1.25x faster, a major third higher
        "a third higher (1.25x faster)": resample_poly(wave, 4, 5).astype(np.float32),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with RAVDESS/ TESS/ ...")
    ap.add_argument(
        "--before", default="HEAD", help="git revision(s) of the earlier arm(s), comma-separated"
    )
    ap.add_argument("--faults", action="store_true", help="also with a DC offset and hum")
    ap.add_argument("--limit", type=int, default=0, help="first N clips only (a smoke run)")
    ap.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "speech_refusals.json"
    )
    args = ap.parse_args(argv)
    import torch

    from sound2sight.config import PipelineConfig
    from sound2sight.voice import vad as after
    from sound2sight.voice.audio import AudioError, load_audio

    torch.set_num_threads(1)
    revisions = [r for r in args.before.split(",") if r]
    pc = PipelineConfig()
    clips = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".wav", ".mp3", ".flac"))
    clips = [p for p in clips if "originals" not in p.parts]
    if args.limit:
        clips = clips[: args.limit]
    arms = {("before" if i == 0 else r): load_revision(r) for i, r in enumerate(revisions)}
    arms["after"] = after
    kinds = list(faults(np.zeros(1, np.float32))) if args.faults else ["as recorded"]
    refused: dict[str, dict[str, list]] = {a: {k: [] for k in kinds} for a in arms}
    undecodable, t0 = [], time.perf_counter()
    for path in tqdm(clips, desc="speech check", unit="clip"):
        rel = str(path.relative_to(args.data))
        try:
            wave = load_audio(path, sample_rate=SR)
        except AudioError as exc:  # not a speech-check refusal: the file does not decode
            undecodable.append({"clip": rel, "reason": str(exc)})
            continue
        versions = faults(wave)
        for kind in kinds:
            for name, mod in arms.items():
                try:
                    mod.extract_speech(
                        versions[kind],
                        name=rel,
                        threshold=pc.vad_threshold,
                        min_speech=pc.min_speech,
                    )
                except mod.AudioError as exc:
                    share = float(np.median(mod._peak_share(versions[kind])))
                    refused[name][kind].append(
                        {"clip": rel, "reason": str(exc), "median_peak_share": round(share, 3)}
                    )
    n = len(clips) - len(undecodable)
    summary = {
        a: {k: {"refused": len(v), "share": len(v) / max(n, 1)} for k, v in by.items()}
        for a, by in refused.items()
    }
    print(
        f"\n{len(clips)} clips ({len(undecodable)} undecodable), {time.perf_counter() - t0:.0f} s"
    )
    print(f"{'input':<28}" + "".join(f"{a:>18}" for a in arms))
    for k in kinds:
        cells = [f"{summary[a][k]['refused']} ({100 * summary[a][k]['share']:.2f} %)" for a in arms]
        print(f"{k:<28}" + "".join(f"{c:>18}" for c in cells))
    print("\nstill refused after the change (as recorded):")
    for r in refused["after"]["as recorded"]:
        print(f"  {r['clip']}: {r['reason']} (median peak share {r['median_peak_share']})")
    listed = {  # every refusal of the kept code; a sample of any arm with over 200 of them
        a: {k: v if len(v) <= 200 else v[:20] for k, v in by.items()} for a, by in refused.items()
    }
    out = {
        "before_revision": revisions[0],
        "revisions": {a: r for a, r in zip(arms, revisions, strict=False)},
        "n_clips": len(clips),
        "n_decoded": n,
        "undecodable": undecodable,
        "settings": {"vad_threshold": pc.vad_threshold, "min_speech": pc.min_speech},
        "summary": summary,
        "refused": listed,
        "note": "refused: every refusal, except arms with over 200 (their first 20; see summary)",
    }
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
