"""Safe loading: checkpoints load with ``weights_only=True``, bundles from safetensors.

A crafted pickle whose ``__reduce__`` would create a marker file is refused by every
loader with a ``ValueError`` naming the file, and the marker never appears.  Truncated or
corrupt files give a clear error too.  A bundle loads with no unpickling at all.
"""

from __future__ import annotations

import builtins
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from sound2sight.config import config_to_dict, load_config
from sound2sight.io import safe_torch_load
from sound2sight.labels import EMOTIONS
from sound2sight.models.heads import JointSpace, load_joint_space
from sound2sight.painting.model import Generator, load_generator
from sound2sight.pipeline import Sound2Sight, export_bundle
from sound2sight.retrieval import Gallery
from sound2sight.voice.classifier import build_classifier, load_classifier

pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")

CFG = load_config(overrides=["audio.n_mels=32", "classifier.width=8", "gan.g_ch=8", "seed=3"])


class Payload:
    """Unpickling this calls ``open(marker, "w")``: a file appears if code runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


def write_evil(path: Path, marker: Path, kind: str) -> Path:
    """A checkpoint-looking file holding :class:`Payload` (torch zip, legacy torch, raw pickle)."""
    obj = {"model": {"weight": torch.zeros(2)}, "config": {}, "hook": Payload(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "zip":
        torch.save(obj, path)
    elif kind == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(obj))
    return path


def _save_run(run: Path) -> Path:
    """A run directory with tiny untrained classifier, shared space, GAN and gallery."""
    torch.manual_seed(0)
    cfg = config_to_dict(CFG)
    clf = build_classifier(CFG.classifier, n_mels=CFG.audio.n_mels)
    joint = JointSpace(audio_dim=CFG.classifier.embed_dim, image_dim=1280, cfg=CFG.align)
    gen = Generator(CFG.gan)
    for stage in ("classifier", "align", "gan"):
        (run / stage).mkdir(parents=True, exist_ok=True)
    torch.save(
        {"model": clf.state_dict(), "config": cfg, "labels": list(EMOTIONS)},
        run / "classifier" / "best.pt",
    )
    torch.save(
        {"model": joint.state_dict(), "joint": joint.checkpoint_meta(), "config": cfg},
        run / "align" / "best.pt",
    )
    torch.save({"G_ema": gen.state_dict(), "config": cfg}, run / "gan" / "best.pt")
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, CFG.align.dim)).astype(np.float32)
    Gallery(
        np.array([f"p{i}.png" for i in range(6)]),
        np.array([EMOTIONS[i % 3] for i in range(6)]),
        emb / np.linalg.norm(emb, axis=1, keepdims=True),
        rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8),
    ).save(run / "align" / "gallery.npz")
    return run


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    return _save_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture
def run_copy(good_run, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(good_run, tmp_path / "run"))


def _voice() -> np.ndarray:
    """A real CREMA-D clip (a pure tone is refused by the speech check, as it should be)."""
    from conftest import EXAMPLE_VOICES
    from sound2sight.voice.audio import load_audio

    return load_audio(EXAMPLE_VOICES[0])


def test_payload_is_live_when_unpickled_unsafely(tmp_path):
    """Control: the crafted file does run code under ``weights_only=False``."""
    marker = tmp_path / "PWNED"
    path = write_evil(tmp_path / "best.pt", marker, "zip")
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("kind", ["zip", "legacy", "raw_pickle"])
def test_safe_torch_load_refuses_code_and_names_the_file(tmp_path, kind):
    marker = tmp_path / "PWNED"
    path = write_evil(tmp_path / "best.pt", marker, kind)
    with pytest.raises(ValueError, match="refused to load") as err:
        safe_torch_load(path)
    assert str(err.value).startswith(f"{path}: ") and "could run code" in str(err.value)
    assert "weights_only=False" not in str(err.value)  # no advice to load it unsafely
    assert not marker.exists()


LOADERS = {
    "classifier": (load_classifier, "classifier/best.pt"),
    "generator": (load_generator, "gan/best.pt"),
    "joint_space": (load_joint_space, "align/best.pt"),
}


@pytest.mark.parametrize("kind", ["zip", "legacy", "raw_pickle"])
@pytest.mark.parametrize("loader", list(LOADERS))
def test_model_loaders_refuse_a_crafted_pickle(tmp_path, loader, kind):
    load, rel = LOADERS[loader]
    marker = tmp_path / "PWNED"
    path = write_evil(tmp_path / rel, marker, kind)
    with pytest.raises(ValueError, match=f"^{path}: refused to load"):
        load(path)
    assert not marker.exists()


@pytest.mark.parametrize("stage", ["classifier/best.pt", "align/best.pt", "gan/best.pt"])
def test_from_run_refuses_a_crafted_checkpoint_in_any_stage(run_copy, tmp_path, stage):
    Sound2Sight.from_run(run_copy)  # control: the intact run loads
    marker = tmp_path / "PWNED"
    write_evil(run_copy / stage, marker, "zip")
    with pytest.raises(ValueError, match=f"^{run_copy / stage}: refused to load"):
        Sound2Sight.from_run(run_copy)
    assert not marker.exists()


def test_from_run_refuses_a_gallery_holding_pickles(run_copy, tmp_path):
    marker = tmp_path / "PWNED"
    path = run_copy / "align" / "gallery.npz"
    np.savez(path, paths=np.array([Payload(marker)], dtype=object))
    with pytest.raises(ValueError, match=f"^{path}: not a gallery") as err:
        Sound2Sight.from_run(run_copy)
    assert "allow_pickle" in str(err.value) and not marker.exists()


def test_intact_run_loads_and_paints(good_run):
    pipe = Sound2Sight.from_run(good_run)
    result = pipe(_voice(), sample_rate=16000, n_images=1, k=2, seed=0)
    assert result.emotion in EMOTIONS and result.images[0].shape == (128, 128, 3)
    assert len(result.neighbours) == 2


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("damage", ["truncated", "empty", "random_bytes"])
def test_damaged_checkpoint_is_a_clear_error(good_run, tmp_path, loader, damage):
    load, rel = LOADERS[loader]
    data = (good_run / rel).read_bytes()
    path = tmp_path / "best.pt"
    path.write_bytes(
        {
            "truncated": data[: len(data) // 2],
            "empty": b"",
            "random_bytes": np.random.default_rng(0).bytes(2000),
        }[damage]
    )
    with pytest.raises(ValueError, match=f"^{path}: (not a safe, loadable checkpoint|refused)"):
        load(path)


@pytest.mark.parametrize("loader", list(LOADERS))
def test_checkpoint_of_another_stage_is_a_clear_error(good_run, loader):
    load, rel = LOADERS[loader]
    other = good_run / ("gan/best.pt" if loader != "generator" else "classifier/best.pt")
    with pytest.raises(ValueError, match=f"^{other}: not a"):
        load(other)


def test_bundle_loads_without_unpickling_anything(good_run, tmp_path, monkeypatch):
    bundle = export_bundle(good_run, tmp_path / "bundle")
    ref = Sound2Sight.from_run(good_run)  # the run itself, loaded before pickle is forbidden
    assert sorted(p.name for p in bundle.glob("*.safetensors")) == [
        "classifier.safetensors",
        "generator.safetensors",
        "joint.safetensors",
    ]
    assert not list(bundle.glob("*.pt"))

    def forbidden(*args, **kwargs):
        raise AssertionError("a bundle must not be unpickled")

    for target in (torch, torch.serialization):
        monkeypatch.setattr(target, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    pipe = Sound2Sight.from_run(bundle)
    for a, b in [(pipe.classifier, ref.classifier), (pipe.generator, ref.generator)]:
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert ka == kb and torch.equal(va, vb), ka
    r1 = pipe(_voice(), sample_rate=16000, n_images=1, k=2, seed=0)
    r2 = ref(_voice(), sample_rate=16000, n_images=1, k=2, seed=0)
    assert r1.emotion == r2.emotion and np.array_equal(r1.images[0], r2.images[0])


def test_bundle_with_a_pickle_in_place_of_safetensors_is_refused(good_run, tmp_path):
    bundle = export_bundle(good_run, tmp_path / "bundle")
    marker = tmp_path / "PWNED"
    weights = bundle / "classifier.safetensors"
    write_evil(weights, marker, "zip")
    with pytest.raises(ValueError, match=f"^{weights}: not a readable safetensors file"):
        Sound2Sight.from_run(bundle)
    assert not marker.exists()
    (bundle / "bundle.json").write_text("{ not json")
    with pytest.raises(ValueError, match="bundle.json: not valid JSON"):
        Sound2Sight.from_run(bundle)
