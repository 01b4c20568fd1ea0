"""Latent conditional GAN: shapes, conditioning, spectral norm, losses, DiffAugment, probe, metrics, smoke runs."""

from __future__ import annotations

import json
from pathlib import Path

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
    ConditionWhitening,
    Discriminator,
    Generator,
    ema_update,
    generate,
    inference_conditions,
    load_generator,
    neighbour_conditions,
)

TINY = GANConfig(g_ch=4, d_ch=4, z_dim=32)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("size,side", [(128, 16), (256, 32)])
def test_shapes(size, side):
    cfg = GANConfig(g_ch=4, d_ch=4, z_dim=32, image_size=size)
    G, D = Generator(cfg), Discriminator(cfg)
    x = G(torch.randn(3, 32), torch.randn(3, 128))
    assert x.shape == (3, 32, side, side)  # a TAEF2 latent of a size-px painting
    assert D(x, torch.randn(3, 128)).shape == (3,)
    img = generate(G.eval(), torch.randn(2, 128), generator=torch.Generator().manual_seed(0))
    assert img.shape == (2, size, size, 3) and img.dtype == np.uint8


def test_bad_image_size_is_refused():
    with pytest.raises(ValueError, match="image_size"):
        Generator(GANConfig(image_size=96))
    from sound2sight.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="gan.image_size"):
        load_config(overrides=["gan.image_size=64"])


@pytest.mark.parametrize("size,mults", [(128, "4,2,2"), (256, "8,4,4,2")])
def test_generator_widths_from_the_config(size, mults):
    from sound2sight.config import ConfigError, load_config

    cfg = load_config(overrides=[f"gan.image_size={size}", f"gan.g_mults={mults}", "gan.g_ch=4"])
    G = Generator(cfg.gan)
    widths = [b.conv2.out_channels for b in G.blocks]
    assert widths == [4 * int(m) for m in mults.split(",")[1:]]
    assert G(torch.randn(2, cfg.gan.z_dim), torch.randn(2, 128)).shape[1:] == (
        32,
        size // 8,
        size // 8,
    )
    with pytest.raises(ConfigError, match="gan.g_mults='4,2'"):
        load_config(overrides=[f"gan.image_size={size}", "gan.g_mults=4,2"])


def test_noise_injection_starts_silent_and_follows_its_generator():
    """gan.noise_inject: per-pixel noise after each generator conv, its scales starting at 0
    (so the generator starts as without it); drawn from the given generator (reproducible)."""
    from dataclasses import replace

    torch.manual_seed(0)
    plain = Generator(TINY).eval()
    noisy = Generator(replace(TINY, noise_inject=True)).eval()
    missing, unexpected = noisy.load_state_dict(plain.state_dict(), strict=False)
    assert (
        not unexpected and missing and all(".noise" in k and k.endswith("scale") for k in missing)
    )
    z, c = torch.randn(2, TINY.z_dim), torch.randn(2, 128)
    assert torch.equal(noisy(z, c), plain(z, c))  # scales 0: the noise adds nothing yet
    for b in noisy.blocks:
        torch.nn.init.constant_(b.noise2.scale, 1.0)

    def draw(seed: int) -> torch.Tensor:
        return noisy(z, c, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(1), draw(1))
    assert (draw(1) - draw(2)).abs().mean() > 1e-3  # fresh per-pixel noise, same z


def test_self_attention_starts_as_the_identity_and_is_placed_at_half_side():
    """gan.attention: one SAGAN layer in G (before its last block) and one in D (after its
    first), both at the latent's half side; gamma starts at 0, so a generator with it paints
    what the same weights paint without it, and it learns (gamma gets a gradient)."""
    from dataclasses import replace

    from sound2sight.painting.model import SelfAttention2d

    torch.manual_seed(0)
    plain = Generator(TINY).eval()
    att = Generator(replace(TINY, attention=True)).eval()
    missing, unexpected = att.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("attention.") for k in missing)
    z, c = torch.randn(2, TINY.z_dim), torch.randn(2, 128)
    assert torch.equal(att(z, c), plain(z, c))
    seen: list[int] = []  # the side each attention layer ran at

    def hook(module, inputs, output):
        seen.append(output.shape[-1])

    for size in (128, 256):
        cfg = replace(TINY, attention=True, image_size=size)
        seen.clear()
        G, D = Generator(cfg), Discriminator(cfg)
        for m in (*G.modules(), *D.modules()):
            if isinstance(m, SelfAttention2d):
                m.register_forward_hook(hook)
        x = G(torch.randn(2, cfg.z_dim), torch.randn(2, 128))
        D(x, torch.randn(2, 128)).sum().backward()
        assert seen == [size // 16, size // 16]
        assert G.attention.gamma.grad is not None and D.blocks[1].gamma.grad is not None


def test_conditional_batchnorm_conditions():
    torch.manual_seed(0)
    G = Generator(TINY).eval()
    z = torch.randn(1, 32).expand(2, -1)
    c = torch.nn.functional.normalize(torch.randn(2, 128), dim=1)
    x = G(z, c)
    assert (x[0] - x[1]).abs().mean() > 1e-3  # same noise, different condition
    same = G(z, c[:1].expand(2, -1))
    assert torch.allclose(same[0], same[1], atol=1e-5)
    other_noise = G(torch.randn(2, 32), c[:1].expand(2, -1))
    assert (other_noise[0] - other_noise[1]).abs().mean() > 1e-3  # hierarchical noise reaches it


def test_whitening_spreads_crowded_conditions():
    """Shared-space points crowd by emotion; whitened, their small directions count."""
    g = torch.Generator().manual_seed(0)
    centre = torch.nn.functional.normalize(torch.randn(3, 128, generator=g), dim=1)
    pts = centre[torch.arange(300) % 3] + 0.05 * torch.randn(300, 128, generator=g)
    w = ConditionWhitening(128)
    w.fit(pts)
    cov = torch.cov(w(pts).T)
    assert torch.allclose(cov, torch.eye(128), atol=0.05)
    D = Discriminator(TINY)
    D.whiten.fit(pts)
    assert D(torch.randn(4, 32, 16, 16), pts[:4]).shape == (4,)


def test_neighbour_conditions_pick_among_the_nearest_paintings():
    paintings = torch.nn.functional.normalize(
        torch.randn(50, 8, generator=torch.Generator().manual_seed(0)), dim=1
    )
    voice = paintings[:1] + 0.01
    g = torch.Generator().manual_seed(1)
    picked = neighbour_conditions(voice.expand(40, -1), paintings, k=3, generator=g)
    sims = (paintings @ torch.nn.functional.normalize(voice, dim=1).T).squeeze(1)
    nearest = set(sims.topk(3).indices.tolist())
    rows = {int((paintings == p).all(1).nonzero()) for p in picked}
    assert rows <= nearest and len(rows) > 1  # only the 3 nearest, and not always the same
    cfg = GANConfig(condition="voice")
    assert torch.equal(inference_conditions(voice, paintings, cfg), voice)
    assert torch.equal(inference_conditions(voice, None, GANConfig()), voice)


def test_latent_probe_learns_and_travels_in_the_state_dict():
    g = torch.Generator().manual_seed(0)
    y = np.arange(60) % 3
    lat = torch.randn(60, 32, 4, 4, generator=g) * 0.3
    lat[:, 0] += torch.as_tensor(y, dtype=torch.float32)[:, None, None]  # channel 0 tells emotion
    G = Generator(TINY)
    assert torch.allclose(G.probe(lat), torch.full((60, 3), 1 / 3))  # unfitted: no preference
    assert G.probe.fit(lat, y) > 0.9
    assert (G.probe(lat).argmax(1).numpy() == y).mean() > 0.9
    one = Generator(TINY).probe
    assert np.isnan(one.fit(lat, np.zeros(60, int)))  # one emotion only: nothing to learn
    assert torch.allclose(one(lat), torch.full((60, 3), 1 / 3))
    G2 = Generator(TINY)
    G2.load_state_dict(G.state_dict())
    assert torch.equal(G2.probe(lat), G.probe(lat))


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
    y = DiffAugment("flip,color,translation,cutout")(x, generator=torch.Generator().manual_seed(0))
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


def test_flip_mirrors_about_half():
    x = torch.arange(16.0).view(1, 1, 1, 16).expand(200, 32, 2, 16)
    y = DiffAugment("flip")(x, generator=torch.Generator().manual_seed(0))
    mirrored = (y[:, 0, 0, 0] == 15).float().mean().item()
    assert 0.35 < mirrored < 0.65 and torch.equal(y[y[:, 0, 0, 0] == 15][0], x[0].flip(-1))


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
    base = dict(g_ch=4, d_ch=4, z_dim=32, batch_size=4, sample_every=2, ckpt_every=2)
    cfg.gan = GANConfig(**{**base, "fd_samples": 0, "k_condition": 2, **gan})
    return cfg


def test_train_smoke_resume_generate_evaluate(tiny_run, monkeypatch):
    """2 steps, resume to 4, paint, evaluate (both judges, reconstruction FD); the
    unlabelled paintings train it through their image-head points."""
    import sound2sight.painting.train as tg
    from sound2sight.models.image import ImageFeatures
    from sound2sight.painting.evaluate import evaluate_gan

    def extractor(model, **_):  # features of the unlabelled paintings missing from features.npz
        return lambda paths: ImageFeatures(
            np.ones((len(paths), 1280), np.float32), list(paths), [], 0
        )

    monkeypatch.setattr("sound2sight.models.image.ImageFeatureExtractor", extractor)
    cfg = _cfg(steps=2, fd_samples=6)
    out = tg.train_gan(cfg, tiny_run)
    gan = tiny_run / "gan"
    assert out["steps"] == 2 and np.isfinite(out["best_fd_effnet"])
    assert out["n_train_images"] == 17 and out["n_labelled"] == 13  # 13 + 4 unlabelled
    for name in ("best.pt", "last.pt", "curves.png", "train.log", "samples/step_000002.png"):
        assert (gan / name).is_file(), name
    grid = Image.open(gan / "samples" / "step_000002.png")
    assert grid.size[1] == 3 * 130 + 2  # one row per emotion of decoded 128 px paintings
    state = torch.load(gan / "last.pt", weights_only=True)
    assert state["G"]["out_conv.weight"].shape[0] == 32  # it paints latents
    cfg.gan.steps = 4
    assert tg.train_gan(cfg, tiny_run)["steps"] == 4
    G, gcfg = load_generator(gan / "last.pt")
    assert not G.training and gcfg.steps == 4
    assert G.probe.weight.abs().sum() > 0  # the fitted latent probe came with the weights
    assert not torch.equal(G.whiten.matrix, torch.eye(128))  # and the conditions' whitening
    imgs = generate(G, torch.zeros(2, 128), generator=torch.Generator().manual_seed(0))
    again = generate(G, torch.zeros(2, 128), generator=torch.Generator().manual_seed(0))
    assert imgs.shape == (2, 128, 128, 3) and imgs.dtype == np.uint8
    assert np.array_equal(imgs, again)
    m = evaluate_gan(cfg, tiny_run, n_per_class=3, n_fd=6)
    assert set(m["consistency"]["generated"]) == {"k1", "k5"}
    assert m["fd_effnet"]["generated"] >= 0 and 0 <= m["probe"]["generated"]["balanced"] <= 1
    assert m["image_size"] == 128 and "neighbours" in m["conditions"]
    assert json.loads((gan / "metrics.json").read_text())["step"] in (2, 4)  # the best one
    assert all((gan / f"grid_{e}.png").is_file() for e in EMOTIONS)
    reach = m["emotion_vs_noise"]
    assert reach["emotion"] >= 0 and reach["noise"] > 0
    ind = m["independent"]
    assert ind["fd"]["generated"] >= 0 and ind["fd"]["reconstruction_heldout"] >= 0
    held = ind["consistency_heldout"]
    assert held["probe"]["real_ceiling"]["n"] == 13  # the 13 labelled training paintings...
    assert held["probe"]["generated"]["n"] == 9  # ...judged by the 3 held-out ones
    assert all((gan / f"real_{e}.png").is_file() for e in EMOTIONS)
    raw = evaluate_gan(cfg, tiny_run, n_per_class=3, n_fd=6, checkpoint="last", weights="G")
    assert raw["weights"] == "G" and (gan / "metrics_raw.json").is_file()
    assert json.loads((gan / "metrics.json").read_text())["weights"] == "G_ema"  # not overwritten
    with pytest.raises(ValueError, match="weights"):
        load_generator(gan / "last.pt", weights="D")
    cfg.gan.image_size, cfg.gan.steps = 256, 6
    with pytest.raises(ValueError, match="image_size"):
        tg.train_gan(cfg, tiny_run)  # a resume never mixes sizes


def test_ema_copies_until_it_starts(tiny_run, monkeypatch):
    from sound2sight.painting.train import train_gan

    cfg = _cfg(steps=2, ema_start=5, unlabelled=False)
    train_gan(cfg, tiny_run)
    state = torch.load(tiny_run / "gan" / "last.pt", weights_only=True)
    assert all(torch.equal(state["G"][k], state["G_ema"][k]) for k in state["G"])
    cfg.gan.ema_start, cfg.gan.steps = 2, 4
    train_gan(cfg, tiny_run)  # resumed: steps 3 and 4 average
    state = torch.load(tiny_run / "gan" / "last.pt", weights_only=True)
    k = "out_conv.weight"
    assert not torch.equal(state["G"][k], state["G_ema"][k])


def test_lr_decay_falls_linearly_to_zero(tiny_run):
    """gan.lr_decay_from: both Adam lrs are scaled by (steps - step) / (steps - decay_from) from
    that step on (the last of 4 steps from step 2: half), and 0 keeps them constant."""
    state = _trained(tiny_run, steps=4, lr_decay_from=2)
    cfg = _cfg()
    assert state["opt_g"]["param_groups"][0]["lr"] == pytest.approx(cfg.gan.lr_g * 0.5)
    assert state["opt_d"]["param_groups"][0]["lr"] == pytest.approx(cfg.gan.lr_d * 0.5)
    flat = _trained(tiny_run, steps=4)
    assert flat["opt_g"]["param_groups"][0]["lr"] == pytest.approx(cfg.gan.lr_g)
    assert not torch.equal(state["G"]["out_conv.weight"], flat["G"]["out_conv.weight"])


def _trained(run: Path, steps: int = 2, *, fresh: bool = True, **gan) -> dict:
    """``last.pt`` after training ``run`` to ``steps`` (from scratch unless ``fresh=False``)."""
    from sound2sight.painting.train import train_gan

    if fresh:
        for name in ("last.pt", "best.pt"):
            (run / "gan" / name).unlink(missing_ok=True)
    train_gan(_cfg(steps=steps, unlabelled=False, **gan), run)
    return torch.load(run / "gan" / "last.pt", weights_only=True)


def test_feature_matching_and_noise_injection_train(tiny_run):
    """gan.feature_match adds a term to the generator's loss (same seed, other weights after
    2 steps); gan.noise_inject trains its scales; both resume from last.pt."""
    plain, matched = _trained(tiny_run)["G"], _trained(tiny_run, feature_match=1.0)["G"]
    assert not torch.equal(plain["out_conv.weight"], matched["out_conv.weight"])
    noisy = _trained(tiny_run, noise_inject=True)["G"]
    assert any(k.endswith("noise2.scale") and v.abs().sum() > 0 for k, v in noisy.items())
    both = _trained(tiny_run, 4, fresh=False, noise_inject=True, feature_match=1.0)
    assert both["step"] == 4
    att = _trained(tiny_run, attention=True)  # gan.attention trains its gains in G and D
    assert att["G"]["attention.gamma"].abs() > 0 and att["D"]["blocks.1.gamma"].abs() > 0


def test_lecam_regularises_the_discriminator_and_resumes(tiny_run):
    """gan.lecam adds a term to D's loss (other D weights after 2 steps at the same seed) and
    its running means travel in last.pt, so a resumed run continues from them."""
    plain, reg = _trained(tiny_run), _trained(tiny_run, lecam=0.3)
    assert any(not torch.equal(plain["D"][k], reg["D"][k]) for k in plain["D"])
    assert reg["lecam"].abs().sum() > 0 and plain["lecam"].abs().sum() == 0
    resumed = _trained(tiny_run, 4, fresh=False, lecam=0.3)
    assert resumed["step"] == 4 and not torch.equal(resumed["lecam"], reg["lecam"])


def test_r1_penalises_the_discriminator_and_resumes(tiny_run):
    """gan.r1 adds the R1 penalty to D's loss on its first step (other D weights after 2 steps
    at the same seed), and a run with it resumes from last.pt."""
    plain, reg = _trained(tiny_run), _trained(tiny_run, r1=10.0)
    assert any(not torch.equal(plain["D"][k], reg["D"][k]) for k in plain["D"])
    assert _trained(tiny_run, 4, fresh=False, r1=10.0)["step"] == 4


def test_minibatch_std_reads_the_spread_within_each_group():
    """gan.mbstd: one channel before D's last block, the mean feature spread of each group of
    4 latents; a latent's logit depends on its own group only, and any batch size works."""
    from dataclasses import replace

    from sound2sight.painting.model import MinibatchStd

    x = torch.randn(8, 5, 2, 2)
    out = MinibatchStd(4)(x)
    members = x.view(4, 2, 5, 2, 2)[:, 0]  # latents 0, 2, 4, 6: the first group
    want = members.std(dim=0, unbiased=False).mean()
    assert torch.allclose(out[[0, 2, 4, 6], -1], want.expand(4, 2, 2), atol=1e-5)
    assert torch.equal(out[:, :5], x)
    for b in (1, 2, 3, 6):
        assert MinibatchStd(4)(torch.randn(b, 5, 2, 2)).shape == (b, 6, 2, 2)
    torch.manual_seed(0)
    D = Discriminator(replace(TINY, mbstd=True)).eval()
    lat, c = torch.randn(8, 32, 16, 16), torch.randn(8, 128)
    base = D(lat, c)
    lat2 = lat.clone()
    lat2[1] += 1.0  # latent 1 is in the second group (1, 3, 5, 7)
    moved = D(lat2, c) != base
    assert moved[[1, 3, 5, 7]].all() and not moved[[0, 2, 4, 6]].any()


def test_old_pixel_gan_checkpoint_is_named(tmp_path):
    cfg = {"gan": {"resolution": 64, "guidance": 1.0}}
    atomic_torch_save({"G_ema": {}, "config": cfg}, tmp_path / "best.pt")
    with pytest.raises(ValueError, match="older sound2sight"):
        load_generator(tmp_path / "best.pt")
