"""Conditional GAN: shapes, conditioning, spectral norm, losses, DiffAugment, metrics, smoke runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn.utils import parametrize

from sound2sight.config import AlignConfig, Config, GANConfig
from sound2sight.datasets.base import ArtItem, write_manifest
from sound2sight.io import atomic_torch_save
from sound2sight.labels import EMOTIONS
from sound2sight.losses import loss_hinge_dis, loss_hinge_gen
from sound2sight.painting.augment import DiffAugment
from sound2sight.painting.metrics import (
    consistency,
    diversity,
    frechet_distance,
    kid,
    knn_vote,
    probe_consistency,
)
from sound2sight.painting.model import (
    ConditionBank,
    Discriminator,
    Generator,
    ema_update,
    generate,
    load_generator,
)

TINY = GANConfig(g_ch=4, d_ch=4, z_dim=32)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("res", [64, 128])
def test_shapes(res):
    cfg = GANConfig(g_ch=4, d_ch=4, z_dim=32, resolution=res)
    G, D = Generator(cfg), Discriminator(cfg)
    x = G(torch.randn(3, 32), torch.randn(3, 128))
    assert x.shape == (3, 3, res, res)
    assert x.abs().max() <= 1.0
    assert D(x, torch.randn(3, 128)).shape == (3,)


def test_bad_resolution_is_refused():
    with pytest.raises(ValueError, match="resolution"):
        Generator(GANConfig(resolution=96))


def test_conditional_batchnorm_conditions():
    torch.manual_seed(0)
    G = Generator(TINY).eval()
    z = torch.randn(1, 32).expand(2, -1)
    c = torch.nn.functional.normalize(torch.randn(2, 128), dim=1)
    x = G(z, c)
    assert (x[0] - x[1]).abs().mean() > 1e-3  # same noise, different condition
    same = G(z, c[:1].expand(2, -1))
    assert torch.allclose(same[0], same[1], atol=1e-5)


def test_spectral_norm_on_every_discriminator_layer():
    D = Discriminator(TINY)
    layers = [m for m in D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) >= 10
    assert all(parametrize.is_parametrized(m, "weight") for m in layers)


def test_hinge_losses_known_values():
    real, fake = torch.tensor([2.0, 0.0, 0.5]), torch.tensor([-2.0, 0.5, 0.0])
    # relu(1 - real) = [0, 1, .5] -> .5 ; relu(1 + fake) = [0, 1.5, 1] -> 5/6
    assert loss_hinge_dis(real, fake).item() == pytest.approx(0.5 + 2.5 / 3)
    assert loss_hinge_gen(fake).item() == pytest.approx(0.5)


def test_diffaugment_shape_and_gradient():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    y = DiffAugment("color,translation,cutout")(x, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    cut = DiffAugment("cutout")(
        torch.ones(8, 3, 16, 16), generator=torch.Generator().manual_seed(1)
    )
    zeroed = (cut == 0).float().mean().item()
    assert 0.05 < zeroed < 0.3  # an 8x8 square (clipped at the border) out of 16x16
    with pytest.raises(ValueError, match="unknown"):
        DiffAugment("rotate")


def test_translation_moves_pixels():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 4, 4] = 1
    y = DiffAugment("translation")(x, generator=torch.Generator().manual_seed(3))
    assert y.sum() <= 1 and y.shape == x.shape


def test_condition_bank_and_ema():
    bank = ConditionBank(
        np.arange(12, dtype=np.float32).reshape(6, 2), np.array([0, 0, 1, 1, 2, 2])
    )
    c = bank.sample(torch.tensor([2, 2, 0]), generator=torch.Generator().manual_seed(0))
    assert set(c[:2, 0].tolist()) <= {8.0, 10.0} and c[2, 0].item() in (0.0, 2.0)
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = a.weight.detach().clone()
    ema_update(a, b, decay=0.5)
    assert torch.allclose(a.weight, (before + b.weight) / 2)


def test_metric_known_answers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, x + 2.0) == pytest.approx(4 * 6, rel=1e-6)  # |shift|^2
    same_dist = rng.normal(size=(300, 6))  # an independent sample of the same distribution
    assert abs(kid(x, same_dist, subsets=20, subset_size=100)["mean"]) < 0.02
    assert kid(x, x + 2.0, subsets=5, subset_size=100)["mean"] > 1.0
    centres = np.eye(3) * 10
    ref = np.concatenate([c + rng.normal(0, 0.1, (20, 3)) for c in centres])
    ref_y = np.repeat(np.arange(3), 20)
    q = np.concatenate([c + rng.normal(0, 0.1, (5, 3)) for c in centres])
    q_y = np.repeat(np.arange(3), 5)
    res = consistency(q, q_y, ref, ref_y, names=EMOTIONS)
    assert res["k1"]["balanced"] == 1.0 and res["k5"]["balanced"] == 1.0
    assert res["k5"]["per_class"] == {e: 1.0 for e in EMOTIONS}
    assert knn_vote(q, ref, ref_y, k=1).tolist() == q_y.tolist()
    probe = probe_consistency(ref, ref_y, {"q": (q, q_y)}, names=EMOTIONS)
    assert probe["q"]["balanced"] == 1.0
    div = diversity(ref, ref_y, ref, ref_y, names=EMOTIONS)
    assert div["mean_ratio"] == pytest.approx(1.0)


# ---------------------------------------------------------------- smoke runs on a tiny run dir


class _StandInEncoder(torch.nn.Module):
    """A cheap stand-in for EfficientNet-Lite0 (same config and feature size)."""

    def __init__(self, variant: str = "lite0") -> None:
        from sound2sight.models.image import LITE2, ImageEncoderConfig

        super().__init__()
        self.config = LITE2 if variant == "lite2" else ImageEncoderConfig()
        self.proj = torch.nn.Linear(48, 1280)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1))  # (B, 1280)


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    """16 labelled + 4 unlabelled tiny paintings, stand-in align outputs and image features."""
    from sound2sight.models.heads import JointSpace
    from sound2sight.train.features import save_npz

    torch.manual_seed(0)
    encoders = {v: _StandInEncoder(v).eval() for v in ("lite0", "lite2")}
    monkeypatch.setattr(
        "sound2sight.models.image.load_image_encoder",
        lambda device="cpu", variant="lite0": (encoders[variant], None),
    )
    rng = np.random.default_rng(0)
    items = []
    for i in range(20):
        label = EMOTIONS[i % 3] if i < 16 else ""
        p = tmp_path / "art" / f"p{i}.png"
        p.parent.mkdir(exist_ok=True)
        base = np.array([[200, 40, 40], [230, 200, 60], [40, 60, 160]][i % 3], np.uint8)
        img = np.clip(base + rng.integers(-30, 30, (24, 24, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(p)
        split = "test" if i in (12, 13, 14) else "train"
        items.append(ArtItem(str(p), label, label, f"g{i}", "test", split))
    write_manifest(items, tmp_path / "run" / "data" / "art_manifest.csv")
    joint = JointSpace(audio_dim=8, image_dim=1280, cfg=AlignConfig())
    atomic_torch_save(
        {"model": joint.state_dict(), "joint": joint.checkpoint_meta()},
        tmp_path / "run" / "align" / "best.pt",
    )
    n = 30
    save_npz(
        tmp_path / "run" / "align" / "audio_embeddings.npz",
        paths=np.array([f"a{i}.wav" for i in range(n)]),
        labels=np.array([EMOTIONS[i % 3] for i in range(n)]),
        speakers=np.array([f"s{i % 5}" for i in range(n)]),
        splits=np.array(["train"] * 18 + ["val"] * 6 + ["test"] * 6),
        probs=np.full((n, 3), 1 / 3, np.float32),
        embeddings=rng.normal(size=(n, 8)).astype(np.float32),
    )
    save_npz(
        tmp_path / "run" / "image" / "features.npz",
        paths=np.array([it.path for it in items[:16]]),
        labels=np.array([it.label for it in items[:16]]),
        splits=np.array([it.split for it in items[:16]]),
        feats=rng.random((16, 1280)).astype(np.float32),
    )
    return tmp_path / "run"


def _cfg(**gan) -> Config:
    cfg = Config()
    base = dict(g_ch=4, d_ch=4, z_dim=32, batch_size=4, sample_every=1, ckpt_every=2, fd_samples=0)
    base.update(discriminator="resnet", guidance=0.0)  # projected: its own test (a real Lite0)
    cfg.gan = GANConfig(**{**base, **gan})
    return cfg


def test_train_smoke_resume_generate_evaluate(tiny_run):
    from sound2sight.painting.evaluate import evaluate_gan
    from sound2sight.painting.train import train_gan

    cfg = _cfg(steps=2, fd_samples=6)
    out = train_gan(cfg, tiny_run)
    gan = tiny_run / "gan"
    assert out["steps"] == 2 and np.isfinite(out["best_fd_effnet"])
    for name in (
        "best.pt",
        "last.pt",
        "curves.png",
        "train.log",
        "samples/step_000001.png",
        "samples/step_000002.png",
    ):
        assert (gan / name).is_file(), name
    grid = Image.open(gan / "samples" / "step_000002.png")
    assert grid.size[1] == 3 * 66 + 2  # one row per emotion
    cfg.gan.steps = 4
    assert train_gan(cfg, tiny_run)["steps"] == 4
    G, gcfg = load_generator(gan / "last.pt")
    assert not G.training and gcfg.steps == 4
    imgs = generate(G, torch.zeros(2, 128), generator=torch.Generator().manual_seed(0))
    again = generate(G, torch.zeros(2, 128), generator=torch.Generator().manual_seed(0))
    assert imgs.shape == (2, 64, 64, 3) and imgs.dtype == np.uint8
    assert np.array_equal(imgs, again)
    m = evaluate_gan(cfg, tiny_run, n_per_class=3, n_fd=6)
    assert set(m["consistency"]["generated"]) == {"k1", "k5"}
    assert m["fd_effnet"]["generated"] >= 0 and 0 <= m["probe"]["generated"]["balanced"] <= 1
    assert json.loads((gan / "metrics.json").read_text())["step"] in (2, 4)  # the best one
    assert all((gan / f"grid_{e}.png").is_file() for e in EMOTIONS)
    raw = evaluate_gan(cfg, tiny_run, n_per_class=3, n_fd=6, checkpoint="last", weights="G")
    assert raw["weights"] == "G" and (gan / "metrics_raw.json").is_file()
    assert json.loads((gan / "metrics.json").read_text())["weights"] == "G_ema"  # not overwritten
    G_raw, _ = load_generator(gan / "last.pt", weights="G")
    assert not torch.equal(G_raw.out_conv.weight, G.out_conv.weight)
    with pytest.raises(ValueError, match="weights"):
        load_generator(gan / "last.pt", weights="D")


def test_image_condition_admits_unlabelled(tiny_run, monkeypatch):
    import sound2sight.painting.train as tg
    from sound2sight.models.image import ImageFeatures

    def extractor(model, **_):  # features of the unlabelled paintings missing from features.npz
        return lambda paths: ImageFeatures(
            np.ones((len(paths), 1280), np.float32), list(paths), [], 0
        )

    monkeypatch.setattr("sound2sight.models.image.ImageFeatureExtractor", extractor)
    seen = {}
    real_conditions = tg.image_conditions

    def spy(cfg, run_dir, joint, paths):
        seen["n"] = len(paths)
        return real_conditions(cfg, run_dir, joint, paths)

    monkeypatch.setattr(tg, "image_conditions", spy)
    out = tg.train_gan(_cfg(steps=1, condition="image"), tiny_run)
    assert (
        out["steps"] == 1 and out["n_train_images"] == 17 and seen["n"] == 17
    )  # 13 + 4 unlabelled


def test_projected_discriminator_trains_guides_resumes_and_is_scored(tiny_run, monkeypatch):
    """Projected D on a (random-init) Lite0 + emotion guidance: train, resume, evaluate."""
    from sound2sight.models.image import EfficientNetLite0, ImageEncoderConfig
    from sound2sight.painting.evaluate import evaluate_gan
    from sound2sight.painting.train import train_gan

    torch.manual_seed(0)
    lite0 = EfficientNetLite0(ImageEncoderConfig()).eval().requires_grad_(False)
    stand_in = _StandInEncoder("lite2").eval()
    monkeypatch.setattr(
        "sound2sight.models.image.load_image_encoder",
        lambda device="cpu", variant="lite0": (lite0 if variant == "lite0" else stand_in, None),
    )
    cfg = _cfg(steps=2, discriminator="projected", d_input_size=64, guidance=0.5, log_every=1)
    out = train_gan(cfg, tiny_run)
    assert out["discriminator"] == "projected" and out["steps"] == 2
    state = torch.load(tiny_run / "gan" / "last.pt", weights_only=True)
    assert any(k.startswith("discs.") for k in state["D"])
    assert all(np.isfinite(state["history"]["guide_ce"])) and state["history"]["guide_ce"][0] > 0
    before = {k: v.clone() for k, v in state["D"].items() if k.startswith("mixing.")}
    cfg.gan.steps = 3
    assert train_gan(cfg, tiny_run)["steps"] == 3  # resumed
    after = torch.load(tiny_run / "gan" / "last.pt", weights_only=True)["D"]
    assert all(torch.equal(before[k], after[k]) for k in before)  # the mixing stays frozen
    cfg.gan.discriminator, cfg.gan.steps = "resnet", 4
    with pytest.raises(ValueError, match="discriminator='projected'"):
        train_gan(cfg, tiny_run)
    cfg.gan.discriminator = "projected"
    m = evaluate_gan(cfg, tiny_run, n_per_class=3, n_fd=6, checkpoint="last")
    assert m["training"]["discriminator"] == "projected"
    reach = m["emotion_vs_noise"]
    assert reach["emotion"] >= 0 and reach["noise"] > 0
    ind = m["independent"]
    assert ind["fd"]["generated"] >= 0 and "kid" in ind and "diversity" in ind
    held = ind["consistency_heldout"]
    assert set(held["probe"]) == {"generated", "real_ceiling"}
    assert held["probe"]["real_ceiling"]["n"] == 13  # the 13 labelled training paintings...
    assert held["probe"]["generated"]["n"] == 9  # ...judged by the 3 held-out ones
    assert all((tiny_run / "gan" / f"real_{e}.png").is_file() for e in EMOTIONS)


def test_guidance_needs_projected_discriminator(tiny_run):
    from sound2sight.painting.train import train_gan

    with pytest.raises(ValueError, match="guidance"):
        train_gan(_cfg(steps=1, guidance=1.0), tiny_run)  # _cfg: the resnet D


def test_guide_negatives_make_a_blank_canvas_no_emotion():
    """gan.guide_negatives: the guide learns flat canvases as a class of their own, so a flat
    canvas in an emotion's colours no longer reads as that emotion (the guidance-2/4 collapse)."""
    from sound2sight.models.image import load_image_encoder
    from sound2sight.painting.augment import DiffAugment
    from sound2sight.painting.projected import FeatureNet, fit_guide, flat_canvases

    feats = FeatureNet(load_image_encoder()[0], size=64)  # the real ImageNet Lite0
    g = torch.Generator().manual_seed(0)
    y = torch.arange(24) % 3
    tint = torch.eye(3)[y][:, :, None, None] * 0.8 - 0.4  # each emotion its own colour
    x = (torch.rand(24, 3, 64, 64, generator=g) * 1.2 - 0.6 + tint).clamp(-1, 1)  # textured
    images = ((x + 1) * 127.5).round().to(torch.uint8)
    aug = DiffAugment("")
    args = (feats, images, torch.cat([y[:-1], torch.tensor([-1])]), aug, g, "cpu")
    plain, neg = fit_guide(*args), fit_guide(*args, negatives=True)
    assert plain.linear.out_features == 3 and neg.linear.out_features == 4
    with torch.no_grad():
        flat = feats(flat_canvases(x), pooled=True)[1]
        real = feats(x, pooled=True)[1]
        ce = {
            n: torch.nn.functional.cross_entropy(m(flat), y).item()
            for n, m in (("plain", plain), ("neg", neg))
        }
        assert (neg(flat).argmax(1) == 3).float().mean() > 0.9  # a blank canvas is "no emotion"
        assert (neg(real).argmax(1) == y).float().mean() > 0.9  # the paintings keep theirs
    assert ce["neg"] > ce["plain"] + 1.0, ce
