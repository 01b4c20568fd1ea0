"""What the speech check costs on real speech: accuracy with and without the VAD.

Every test clip of a run (speakers its classifier never saw) goes through the pipeline with
``pipeline.vad`` on and off (no paintings, no neighbours: only the decision); reports how many
clips the check refuses and the accuracy of each arm.

Usage::

    python benchmarks/speech_check.py --run runs/real0

Prints a table and writes ``benchmarks/results/speech_check.json``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from sound2sight.io import atomic_write_json

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "speech_check.json"
    )
    args = ap.parse_args(argv)
    from sound2sight.pipeline import Sound2Sight

    with open(args.run / "data" / "audio_manifest.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    pipe = Sound2Sight.from_run(args.run)
    out = {
        "run": str(args.run),
        "clips": len(rows),
        "vad_threshold": pipe.cfg.pipeline.vad_threshold,
    }
    for vad in (True, False):
        pipe.cfg.pipeline.vad = vad
        ok = n = 0
        for r in rows:
            try:
                res = pipe(r["path"], n_images=0, k=0)
            except ValueError:  # AudioError: refused
                continue
            n += 1
            ok += res.emotion == r["label"]
        arm = "with speech check" if vad else "without"
        out[arm] = {"accepted": n, "refused": len(rows) - n, "accuracy": ok / max(n, 1)}
        print(f"{arm:18s} accepted {n:5d} refused {len(rows) - n:4d} accuracy {ok / max(n, 1):.4f}")
    atomic_write_json(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
