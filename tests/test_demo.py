"""The README's first command on the embedded data: the demo paints real voices with the
voice model that ships in the package (not one trained on procedural voices)."""

from __future__ import annotations

import json

import pytest

from sound2sight.cli import main

FAST = [
    "align.epochs=2",
    "align.steps_per_epoch=3",
    "align.map_points=0",
    "gan.steps=2",
    "gan.batch_size=8",
    "gan.g_ch=8",
    "gan.d_ch=8",
    "gan.sample_every=2",
    "gan.ckpt_every=2",
    "gan.eval_per_class=4",
    "gan.eval_fd=12",
]


@pytest.mark.slow
def test_demo_paints_real_voices_with_the_shipped_model(tmp_path, capsys):
    run = tmp_path / "demo"
    args = ["demo", "--run", str(run)]
    for s in FAST:
        args += ["--set", s]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "voice: Whisper tiny.en + 5 heads pretrained on CREMA-D" in out
    assert "art: procedural demo paintings" in out
    clf = json.loads((run / "classifier" / "metrics.json").read_text())
    assert clf["pretrained"]["name"] == "voice-cremad-tiny-speaker" and clf["epochs_run"] == 0
    assert clf["test"]["n"] > 0  # scored on the demo's own test speakers (real CREMA-D voices)
    manifest = (run / "data" / "audio_manifest.csv").read_text()
    assert "CREMA-D" in manifest and "synthetic" not in manifest
    painted = sorted((run / "painted").glob("*.json"))
    assert painted, "the demo ends by painting real voices"
    for p in painted:
        summary = json.loads(p.read_text())
        assert p.stem.split("_")[0].isdigit()  # a CREMA-D actor id, not a procedural voice
        assert "pretrained on CREMA-D" in summary["provenance"]["voice"]
        assert len(summary["images"]) == 4
    prov = json.loads((run / "provenance.json").read_text())
    assert "real" not in prov["art"].replace("not real", "")
