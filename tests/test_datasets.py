"""Corpus adapters, splits, duplicates and ``prepare`` on tiny files the tests create."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sound2sight.config import Config, DataConfig
from sound2sight.datasets import (
    ArtItem,
    AudioItem,
    LeakError,
    check_speaker_disjoint,
    find_duplicates,
    load_art_corpus,
    load_artemis,
    load_audio_corpus,
    load_labels_csv,
    load_unlabelled_images,
    load_wikiart_emotions,
    read_folds_csv,
    read_manifest,
)
from sound2sight.labels import LabelMap
from sound2sight.prepare import format_prepare_table, make_splits, prepare_art, prepare_audio


def touch(root: Path, *rels: str, data: bytes = b"") -> list[Path]:
    out = []
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data or rel.encode())  # distinct bytes per file unless given
        out.append(p)
    return out


def by_name(manifest) -> dict[str, AudioItem]:
    return {Path(it.path).name: it for it in manifest.items}


def test_ravdess(tmp_path):
    touch(
        tmp_path / "RAVDESS",
        "Actor_01/03-01-05-01-01-01-01.wav",  # angry
        "Actor_01/03-01-06-02-01-01-01.flac",  # fearful -> sad
        "Actor_12/03-01-03-01-02-02-12.mp3",  # happy
        "Actor_12/03-01-01-01-01-01-12.wav",  # neutral -> dropped
        "Actor_12/03-01-05-01.wav",  # bad name
        "Actor_12/notes.txt",  # not audio: ignored
    )
    m = load_audio_corpus(tmp_path)
    items = by_name(m)
    assert {n: (i.label, i.raw_label, i.speaker) for n, i in items.items()} == {
        "03-01-05-01-01-01-01.wav": ("angry", "05", "RAVDESS:01"),
        "03-01-06-02-01-01-01.flac": ("sad", "06", "RAVDESS:01"),
        "03-01-03-01-02-02-12.mp3": ("happy", "03", "RAVDESS:12"),
    }
    assert dict(m.dropped) == {"01": 1}
    assert [Path(p).name for p, _ in m.skipped] == ["03-01-05-01.wav"]
    assert all(it.corpus == "RAVDESS" for it in m.items)


def test_crema_d(tmp_path):
    touch(
        tmp_path / "CREMA-D" / "AudioMP3",
        "1001_DFA_ANG_XX.mp3",
        "1040_ITH_SAD_X.mp3",  # the corpus's one odd level field
        "1091_IEO_FEA_HI.wav",
        "1001_DFA_NEU_XX.mp3",  # neutral -> dropped
        "1001_DFA.mp3",  # bad name
    )
    m = load_audio_corpus(tmp_path / "CREMA-D")  # the corpus folder itself, auto-detected
    assert {n: (i.label, i.speaker) for n, i in by_name(m).items()} == {
        "1001_DFA_ANG_XX.mp3": ("angry", "CREMA-D:1001"),
        "1040_ITH_SAD_X.mp3": ("sad", "CREMA-D:1040"),
        "1091_IEO_FEA_HI.wav": ("sad", "CREMA-D:1091"),
    }
    assert dict(m.dropped) == {"NEU": 1} and len(m.skipped) == 1


def test_tess(tmp_path):
    touch(
        tmp_path,
        "OAF_back_angry.wav",
        "YAF_dog_fear.flac",
        "YAF_germ_happy.ogg",
        "OAF_bite_ps.wav",  # pleasant surprise -> dropped
        "OAF_neutral.wav",  # bad name
    )
    m = load_audio_corpus(tmp_path, fmt="tess")
    assert {n: (i.label, i.raw_label, i.speaker) for n, i in by_name(m).items()} == {
        "OAF_back_angry.wav": ("angry", "angry", "TESS:OAF"),
        "YAF_dog_fear.flac": ("sad", "fear", "TESS:YAF"),
        "YAF_germ_happy.ogg": ("happy", "happy", "TESS:YAF"),
    }
    assert dict(m.dropped) == {"ps": 1} and len(m.skipped) == 1


def test_savee_codes_and_layouts(tmp_path):
    touch(
        tmp_path,
        "DC_a01.wav",
        "DC_sa02.wav",  # sad, not "s" + "a02"
        "DC_su03.wav",  # surprise -> dropped
        "DC_n04.wav",  # neutral -> dropped
        "DC_f05.wav",  # fear -> sad
        "DC_s06.wav",  # no such code -> skipped
        "JK/h01.wav",  # the original per-speaker folder layout
    )
    m = load_audio_corpus(tmp_path, fmt="savee")
    assert {n: (i.label, i.raw_label, i.speaker) for n, i in by_name(m).items()} == {
        "DC_a01.wav": ("angry", "a", "SAVEE:DC"),
        "DC_sa02.wav": ("sad", "sa", "SAVEE:DC"),
        "DC_f05.wav": ("sad", "f", "SAVEE:DC"),
        "h01.wav": ("happy", "h", "SAVEE:JK"),
    }
    assert dict(m.dropped) == {"su": 1, "n": 1}
    assert [Path(p).name for p, _ in m.skipped] == ["DC_s06.wav"]


def test_pooled_root_uses_every_adapter_and_ignores_other_folders(tmp_path):
    touch(
        tmp_path,
        "RAVDESS/Actor_02/03-01-04-01-01-01-02.wav",
        "CREMA-D/AudioMP3/1003_TIE_HAP_XX.mp3",
        "TESS/OAF_back_sad.wav",
        "SAVEE/KL_a01.wav",
        "originals/03-01-05-01-01-01-01.wav",  # not a corpus: ignored
    )
    m = load_audio_corpus(tmp_path)
    assert sorted(it.speaker for it in m.items) == [
        "CREMA-D:1003",
        "RAVDESS:02",
        "SAVEE:KL",
        "TESS:OAF",
    ]
    folds = tmp_path / "folds.csv"
    folds.write_text("corpus,speaker,fold\nRAVDESS,02,0\nCREMA-D,1003,1\nTESS,OAF,2\nSAVEE,KL,3\n")
    assert {it.speaker for it in m.items} == set(read_folds_csv(folds))


def test_folder_per_label_speakers_and_label_map(tmp_path):
    root = tmp_path / "mycorpus"
    touch(
        root,
        "angry/spk1_001.wav",
        "angry/spk2_002.wav",
        "Sad/alice/take1.wav",  # speaker = subfolder
        "calm/spk1_003.wav",  # outside the map -> dropped
        "loose.wav",  # not inside a label folder
    )
    m = load_audio_corpus(root)
    assert {(it.label, it.speaker) for it in m.items} == {
        ("angry", "mycorpus:spk1"),
        ("angry", "mycorpus:spk2"),
        ("sad", "mycorpus:alice"),
    }
    assert dict(m.dropped) == {"calm": 1} and len(m.skipped) == 1
    m2 = load_audio_corpus(
        root, fmt="folder", label_map=LabelMap(overrides={"calm": "sad", "angry": ""})
    )
    assert Counter(it.label for it in m2.items) == {"sad": 2}
    assert dict(m2.dropped) == {"angry": 2}


def test_unknown_format_and_missing_root(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus format"):
        load_audio_corpus(tmp_path, fmt="iemocap")
    pytest.raises(FileNotFoundError, load_audio_corpus, tmp_path / "nope")


def test_duplicates_flag_conflicting_labels(tmp_path):
    a, b, c, d = touch(tmp_path, "a.wav", "b.wav", "c.wav", "d.wav", data=b"same bytes")
    (e,) = touch(tmp_path, "e.wav")
    items = [
        AudioItem(str(a), "happy", "HAP", "X:1", "X"),
        AudioItem(str(b), "angry", "ANG", "X:2", "X"),
        AudioItem(str(e), "sad", "SAD", "X:1", "X"),
    ]
    groups = find_duplicates(items)
    assert len(groups) == 1 and groups[0]["conflict"] and groups[0]["cross_speaker"]
    assert groups[0]["labels"] == ["happy", "angry"]
    same = [AudioItem(str(c), "sad", "04", "X:1", "X"), AudioItem(str(d), "sad", "04", "X:1", "X")]
    assert [g["conflict"] for g in find_duplicates(same)] == [False]


def _speaker_items(n_speakers=10, per=3):
    return [
        AudioItem(f"s{s}_{i}.wav", "sad", "04", f"X:s{s}", "X")
        for s in range(n_speakers)
        for i in range(per)
    ]


def test_splits_are_speaker_disjoint_and_seeded():
    items = make_splits(_speaker_items(), DataConfig(), seed=3)
    check_speaker_disjoint(items)
    assert {it.split for it in items} == {"train", "val", "test"}
    again = make_splits(_speaker_items(), DataConfig(), seed=3)
    assert [it.split for it in again] == [it.split for it in items]


def test_splits_from_a_folds_csv(tmp_path):
    folds = tmp_path / "folds.csv"
    folds.write_text("corpus,speaker,fold\n" + "".join(f"X,s{s},{s % 5}\n" for s in range(10)))
    items = make_splits(_speaker_items(), DataConfig(folds_csv=str(folds), test_fold=2), seed=0)
    assert {it.speaker for it in items if it.split == "test"} == {"X:s2", "X:s7"}
    with pytest.raises(ValueError, match="no fold"):
        make_splits(_speaker_items(12), DataConfig(folds_csv=str(folds)), seed=0)


def test_leak_check_refuses_a_leaking_split():
    items = make_splits(_speaker_items(), DataConfig(), seed=0)
    victim = next(it for it in items if it.split == "train")
    leak = AudioItem("leak.wav", "sad", "04", victim.speaker, "X", split="test")
    with pytest.raises(LeakError, match=victim.speaker):
        check_speaker_disjoint([*items, leak])


def test_art_split_by_group_is_disjoint_and_stratified():
    items = [
        ArtItem(f"{lab}{g}_{k}.jpg", lab, lab, f"{lab}{g}")
        for lab in ("happy", "sad")
        for g in range(20)
        for k in range(2)
    ]
    make_splits(items, DataConfig(), seed=0)
    check_speaker_disjoint(items, key="group")
    counts = Counter((it.label, it.split) for it in items)
    assert counts[("happy", "test")] == counts[("sad", "test")] == 4  # 2 groups x 2 images
    assert counts[("happy", "train")] == 32


def test_art_folders_and_unlabelled(tmp_path):
    touch(
        tmp_path / "art",
        "joy/a.jpg",
        "sadness/b.PNG",
        "sadness/sub/c.webp",
        "neutral/d.jpg",
        "sad/e.txt",
    )
    m = load_art_corpus(tmp_path / "art")
    assert sorted((it.label, it.group) for it in m.items) == [
        ("happy", "a"),
        ("sad", "b"),
        ("sad", "c"),
    ]
    assert dict(m.dropped) == {"neutral": 1}
    u = load_unlabelled_images(tmp_path / "art")
    assert len(u) == 4 and {it.label for it in u.items} == {""}


def test_labels_csv_skips_escaping_and_missing_paths(tmp_path):
    touch(tmp_path / "imgs", "S/a.jpg", "S/b.jpg")
    csv = tmp_path / "imgs" / "labels.csv"
    csv.write_text(
        "image,label,source\n"
        "S/a.jpg,sad,artemis\n"
        "S/b.jpg,surprise,x\n"  # outside the map
        "../../etc/passwd,angry,x\n"
        "/etc/hostname,angry,x\n"
        "S/missing.jpg,happy,x\n"
    )
    m = load_labels_csv(csv)
    assert [(it.label, it.group, it.source) for it in m.items] == [("sad", "a", "artemis")]
    assert dict(m.dropped) == {"surprise": 1}
    assert [r for _, r in m.skipped] == ["path escapes the root"] * 2 + ["image not found"]


def test_labels_csv_missing_column_names_file_and_columns(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,emotion\na.jpg,sad\n")
    with pytest.raises(
        ValueError, match=r"bad\.csv.*missing column\(s\) image, label.*path, emotion"
    ):
        load_labels_csv(bad)


def test_artemis_plurality_ties_and_missing_images(tmp_path):
    touch(tmp_path / "wikiart", "Baroque/p1.jpg", "Baroque/p2.jpg", "Cubism/p3.jpg")
    csv = tmp_path / "artemis.csv"
    rows = [
        ("Baroque", "p1", "sadness"), ("Baroque", "p1", "fear"), ("Baroque", "p1", "awe"),
        ("Baroque", "p2", "anger"), ("Baroque", "p2", "contentment"),  # tie
        ("Cubism", "p3", "something else"), ("Cubism", "p3", "something else"),
        ("Cubism", "p4", "excitement"),  # no image
    ]  # fmt: skip
    csv.write_text(
        "art_style,painting,emotion,utterance\n" + "".join(f"{a},{b},{c},u\n" for a, b, c in rows)
    )
    m = load_artemis(csv, root=tmp_path / "wikiart")
    assert [(it.label, it.group, it.raw_label) for it in m.items] == [
        ("sad", "p1", "fear:1+sadness:1")
    ]
    assert dict(m.skipped) == {
        "Baroque/p2": "vote tie: angry 1, happy 1",
        "Cubism/p3": "no mapped votes",
        str(tmp_path / "wikiart" / "Cubism" / "p4.jpg"): "image not found",
    }
    assert dict(m.dropped) == {"something else": 2}
    assert len(load_art_corpus(tmp_path / "wikiart", labels=csv)) == 1  # sniffed from the header


def test_wikiart_emotions_scores(tmp_path):
    images = (
        "Pop_Art/ann_one.jpg",
        "Pop_Art/bob_two.jpg",
        "Baroque/cy_three.jpg",
        "Baroque/dee_four.jpg",
    )
    touch(tmp_path / "wikiart", *images)
    cols = ["anger", "disgust", "happiness", "love", "sadness", "fear", "surprise"]
    head = ["ID", "Category", "Image URL", *(f"Art (image+title): {c}" for c in cols),
            *(f"ImageOnly: {c}" for c in cols)]  # fmt: skip
    url = "https://uploads.wikiart.org/images/{}/{}.jpg"
    rows = [
        ["1", "Pop Art", url.format("ann", "one"), *["1"] * 7, "0.5", "0.5", "0.2", "0", "0.3", "0", "0"],  # angry 1.0
        ["2", "Pop Art", url.format("bob", "two"), *["0"] * 7, "0", "0", "0.4", "0.4", "0.4", "0.4", "0"],  # happy = sad: tie
        ["3", "Baroque", url.format("cy", "three"), *["0"] * 7, "0", "0", "0", "0", "0", "0", "0.9"],  # nothing mapped
        ["4", "Baroque", url.format("dee", "four"), *["0"] * 7, "0", "0", "0", "0", "1", "1", "0"],  # sad
        ["5", "Baroque", url.format("eve", "five"), *["0"] * 7, "1", "0", "0", "0", "0", "0", "0"],  # no image
    ]  # fmt: skip
    tsv = tmp_path / "WikiArt-Emotions-Ag3.tsv"
    tsv.write_text("\t".join(head) + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    m = load_wikiart_emotions(tsv, root=tmp_path / "wikiart")
    assert [(it.label, it.group, it.raw_label) for it in m.items] == [
        ("angry", "ann_one", "anger+disgust"),
        ("sad", "dee_four", "sadness+fear"),
    ]
    assert [r.split(":")[0] for _, r in m.skipped] == [
        "score tie",
        "no mapped emotion",
        "image not found",
    ]
    assert len(load_art_corpus(tmp_path / "wikiart", labels=tsv)) == 2


def _tone_wav(path: Path, freq: float, *, silent: bool = False) -> None:
    t = np.arange(8000) / 16000
    wave = np.zeros_like(t) if silent else 0.3 * np.sin(2 * np.pi * freq * t)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), 16000, subtype="PCM_16")


def test_prepare_audio_end_to_end(tmp_path):
    root = tmp_path / "voices"
    for s in range(6):
        for k, emo in enumerate(("angry", "happy", "sad", "calm")):
            _tone_wav(root / emo / f"spk{s}_{k}.wav", 150 + 40 * s + 300 * k)
    _tone_wav(root / "sad" / "spk0_silent.wav", 0, silent=True)
    cfg = Config()
    cfg.data.audio_root, cfg.data.cache_dir, cfg.data.workers = str(root), str(tmp_path / "c"), 1
    cfg.data.label_overrides = {"calm": "sad"}
    summary = prepare_audio(cfg, tmp_path / "run")
    assert summary["n_items"] == 24 and summary["speakers"] == 6
    assert [Path(f["path"]).name for f in summary["failures"]] == ["spk0_silent.wav"]
    assert summary["labels"] == {"angry": 6, "happy": 6, "sad": 12}
    assert summary["cache"]["misses"] == 24
    rows = read_manifest(tmp_path / "run" / "data" / "audio_manifest.csv", AudioItem)
    assert len(rows) == 24 and not any("silent" in r.path for r in rows)
    check_speaker_disjoint(rows)
    saved = json.loads((tmp_path / "run" / "data" / "audio_prepare.json").read_text())
    assert saved["counts"] == summary["counts"]
    table = format_prepare_table(summary)
    assert "angry" in table and "failed to decode: 1" in table and "duplicate groups: 0" in table
    again = prepare_audio(cfg, tmp_path / "run")
    assert again["cache"] == {**summary["cache"], "hits": 24, "misses": 0}


def test_prepare_art_with_a_labels_csv(tmp_path):
    names = [f"S/p{i}.jpg" for i in range(30)]
    touch(tmp_path / "art", *names)
    (tmp_path / "art" / "labels.csv").write_text(
        "image,label\n"
        + "".join(f"{n},{('happy', 'sad', 'anger')[i % 3]}\n" for i, n in enumerate(names))
    )
    cfg = Config()
    cfg.data.art_root, cfg.data.art_labels = str(tmp_path / "art"), "labels.csv"
    summary = prepare_art(cfg, tmp_path / "run")
    assert summary["labels"] == {"angry": 10, "happy": 10, "sad": 10}
    assert {s: n for s, n in summary["groups_per_split"].items()} == {
        "train": 24,
        "val": 3,
        "test": 3,
    }
    rows = read_manifest(tmp_path / "run" / "data" / "art_manifest.csv", ArtItem)
    check_speaker_disjoint(rows, key="group")
    assert "total" in format_prepare_table(summary)


def test_prepare_art_adds_an_unlabelled_folder(tmp_path):
    names = [f"S/p{i}.jpg" for i in range(9)]
    touch(tmp_path / "art", *names, *(f"extra/U/u{i}.png" for i in range(20)))
    (tmp_path / "art" / "labels.csv").write_text(
        "image,label\n"
        + "".join(f"{n},{('happy', 'sad', 'angry')[i % 3]}\n" for i, n in enumerate(names))
    )
    cfg = Config()
    cfg.data.art_root, cfg.data.art_labels = str(tmp_path / "art"), "labels.csv"
    cfg.data.art_unlabelled = "extra"  # relative: under art_root
    summary = prepare_art(cfg, tmp_path / "run")
    assert summary["labels"] == {"(unlabelled)": 20, "angry": 3, "happy": 3, "sad": 3}
    rows = read_manifest(tmp_path / "run" / "data" / "art_manifest.csv", ArtItem)
    unlabelled = [r for r in rows if not r.label]
    assert len(unlabelled) == 20 and {r.source for r in unlabelled} == {"unlabelled"}
    assert {r.split for r in unlabelled} == {"train", "val", "test"}
    cfg.data.art_unlabelled = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="art_unlabelled.*nowhere"):
        prepare_art(cfg, tmp_path / "run2")
