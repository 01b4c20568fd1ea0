"""TAEF2, the painter's pretrained autoencoder: real weights, reconstruction, clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from sound2sight.painting import taef2
from sound2sight.painting.taef2 import decode_latents, encode_images, load_taef2

DATA = __import__("pathlib").Path(__file__).parent / "data"

pytestmark = pytest.mark.usefixtures("one_thread")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def test_decoder_reproduces_a_photograph():
    """The vendored weights are the real TAEF2: encode -> decode keeps a 128 px photo."""
    img = np.asarray(Image.open(DATA / "grace_hopper_128.png").convert("RGB"))
    z = encode_images(img[None])
    assert z.shape == (1, 32, 16, 16)
    assert 0.3 < float(z.std()) < 2.0 and float(z.abs().max()) < 10  # TAEF2's latent scale
    rec = decode_latents(z)
    assert rec.shape == (1, 128, 128, 3) and rec.dtype == np.uint8
    assert _psnr(rec[0], img) >= 25.0
    noise = decode_latents(torch.randn(1, 32, 16, 16))  # a random latent is no photograph
    assert _psnr(noise[0], img) < 15.0


@pytest.mark.realdata
def test_decoder_reproduces_real_paintings(shared_data):
    from sound2sight.painting.data import load_art_images

    paths = sorted((shared_data / "art" / "wikiart").rglob("*.jpg"))[::400][:6]
    for size, floor in ((128, 22.0), (256, 25.0)):
        imgs, keep = load_art_images([str(p) for p in paths], size=size, workers=1)
        rec = decode_latents(encode_images(imgs))
        x = imgs.permute(0, 2, 3, 1).numpy()
        psnr = np.mean([_psnr(r, o) for r, o in zip(rec, x, strict=True)])
        assert psnr >= floor, (size, psnr)


def test_weights_load_strictly_with_pinned_hashes():
    dec, enc = load_taef2("decoder"), load_taef2("encoder")
    assert sum(p.numel() for p in enc.parameters()) == 1_338_528
    assert sum(p.numel() for p in dec.parameters()) == 1_338_499
    assert not any(p.requires_grad for p in dec.parameters())
    with pytest.raises(ValueError, match="part"):
        load_taef2("middle")


@pytest.mark.parametrize("damage", ["missing", "truncated", "replaced"])
def test_bad_weight_files_name_the_file(tmp_path, damage):
    shutil.copy(taef2.WEIGHTS_DIR / "taef2_encoder.pth", tmp_path / "taef2_encoder.pth")
    path = tmp_path / "taef2_decoder.pth"
    good = (taef2.WEIGHTS_DIR / "taef2_decoder.pth").read_bytes()
    if damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "replaced":
        torch.save({"0.weight": torch.zeros(1)}, path)
    expected = FileNotFoundError if damage == "missing" else RuntimeError
    with pytest.raises(expected, match="taef2_decoder.pth"):
        load_taef2("decoder", weights_dir=tmp_path)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="multiple of 8"):
        encode_images(np.zeros((1, 12, 12, 3), np.uint8))
    with pytest.raises(ValueError, match="batch"):
        encode_images(np.zeros((12, 12, 3), np.uint8))
    assert decode_latents(torch.zeros(0, 32, 2, 2)).shape == (0, 16, 16, 3)
