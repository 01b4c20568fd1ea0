"""Bad-input zoo, images, label CSVs and configs: a clear error or a documented handling.

Images go through :class:`ImageFeatureExtractor` once (module fixture): decodable ones
give features equal to those of their plain-RGB equivalent, the others are reported as
``(path, reason)`` and skipped.  Label CSVs go through the art adapter: a broken file is a
``ValueError`` naming it, a bad row is skipped or dropped and counted.  Configs: a bad key,
type or file is a :class:`ConfigError` naming it.
"""

from __future__ import annotations

import io
import os
import re
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sound2sight.config import ConfigError, ImageConfig, load_config
from sound2sight.datasets import load_art_corpus, load_wikiart_emotions
from sound2sight.models.image import ImageFeatureExtractor, load_image_encoder
from sound2sight.painting.data import load_art_images

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)  # (H, W, 3) noise "painting"


# ---- image zoo ---------------------------------------------------------------------------


def _png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def _huge_1bit_png(side: int) -> bytes:
    """A valid ``side x side`` 1-bit PNG of zeros, written row block by row block (~50 KB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    z, row = zlib.compressobj(9), b"\x00" * (1 + side // 8)  # filter byte + packed bits
    idat = b"".join(z.compress(row * 1000) for _ in range(side // 1000)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _palette_with_transparency() -> bytes:
    img = Image.fromarray(RGB).convert("P")
    return _png_bytes(img, transparency=0)


def _animated_gif() -> bytes:
    frames = [Image.fromarray(RGB), Image.fromarray(255 - RGB)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


GREY = Image.fromarray(RGB[..., 0])
PALETTE = Image.fromarray(RGB).convert("P")
RGBA = Image.fromarray(np.dstack([RGB, RNG.integers(0, 256, (48, 64), dtype=np.uint8)]))
JPEG = _png_bytes(Image.fromarray(RGB), format="JPEG", quality=90)

# name -> (file name, bytes, the plain-RGB image whose features it must equal or None)
GOOD_IMAGES = {
    "png_with_alpha": (
        "alpha.png",
        _png_bytes(RGBA),
        Image.alpha_composite(Image.new("RGBA", RGBA.size, "white"), RGBA).convert("RGB"),
    ),
    "greyscale": ("grey.png", _png_bytes(GREY), GREY.convert("RGB")),
    "grey_16_bit": (
        "grey16.png",
        _png_bytes(Image.fromarray(RGB[..., 0].astype(np.uint16) * 257)),
        GREY.convert("RGB"),
    ),
    "grey_with_alpha": ("la.png", _png_bytes(GREY.convert("LA")), GREY.convert("RGB")),
    "cmyk_jpeg": (
        "cmyk.jpg",
        _png_bytes(Image.fromarray(RGB).convert("CMYK"), format="JPEG"),
        None,
    ),
    "palette": ("palette.png", _png_bytes(PALETTE), PALETTE.convert("RGB")),
    "palette_transparency": ("palette_tr.png", _palette_with_transparency(), None),
    "one_pixel": ("one.png", _png_bytes(Image.new("RGB", (1, 1), (200, 30, 90))), None),
    "gif": ("still.gif", _png_bytes(PALETTE, format="GIF"), PALETTE.convert("RGB")),
    "animated_gif": ("anim.gif", _animated_gif(), None),
    "bmp": ("plain.bmp", _png_bytes(Image.fromarray(RGB), format="BMP"), Image.fromarray(RGB)),
    "png_named_jpg": ("really_png.jpg", _png_bytes(Image.fromarray(RGB)), Image.fromarray(RGB)),
    "jpeg": ("ok.jpg", JPEG, None),
    "spaces_and_unicode_name": ("ünï cødé 1.png", _png_bytes(GREY), GREY.convert("RGB")),
    "non_utf8_name": (os.fsdecode(b"caf\xe9 \xff.png"), _png_bytes(GREY), GREY.convert("RGB")),
}
# name -> (file name, bytes or None for "make it otherwise", regex the reason must match)
BAD_IMAGES = {
    "truncated_jpeg": ("cut.jpg", JPEG[: len(JPEG) // 2], "truncated"),
    "truncated_png": ("cut.png", _png_bytes(Image.fromarray(RGB))[:200], "truncated|broken|EOF"),
    "text_named_jpg": ("notes.jpg", b"this is text, not a picture\n" * 20, "cannot identify"),
    "empty_file": ("empty.png", b"", "cannot identify"),
    "directory": ("folder.jpg", None, "Is a directory"),
    "missing": ("missing.jpg", None, "No such file"),
    "bomb_20000x20000": ("bomb.png", _huge_1bit_png(20_000), "decompression bomb"),
    "over_max_pixels_8000x8000": (
        "big.png",
        _huge_1bit_png(8_000),
        r"8000x8000 exceeds max_pixels=50000000 \(possible decompression bomb\)",
    ),
}


@pytest.fixture(scope="module")
def encoder():
    return load_image_encoder()[0]


@pytest.fixture(scope="module")
def image_zoo(tmp_path_factory, encoder):
    """Write every image case, extract features once; return (paths, result, seconds, refs)."""
    d = tmp_path_factory.mktemp("images")
    paths = {}
    for name, (fname, data, _) in GOOD_IMAGES.items():
        paths[name] = d / fname
        paths[name].write_bytes(data)
    for name, (fname, data, _) in BAD_IMAGES.items():
        paths[name] = d / fname
        if name == "directory":
            paths[name].mkdir()
        elif data is not None:
            paths[name].write_bytes(data)
    refs = {}
    for name, (_, _, ref) in GOOD_IMAGES.items():
        if ref is not None:
            refs[name] = d / f"ref_{name}.png"
            ref.save(refs[name])
    refs["one_pixel"] = d / "ref_solid.png"
    Image.new("RGB", (300, 200), (200, 30, 90)).save(refs["one_pixel"])
    extractor = ImageFeatureExtractor(
        encoder, batch_size=16, max_pixels=ImageConfig().max_pixels, progress=False
    )
    t0 = time.perf_counter()
    result = extractor([*paths.values(), *refs.values()])
    return paths, result, time.perf_counter() - t0, refs


@pytest.mark.parametrize("name", list(GOOD_IMAGES))
def test_good_image_gives_the_features_of_its_rgb_equivalent(image_zoo, name):
    paths, result, _, refs = image_zoo
    rows = {p: i for i, p in enumerate(result.paths)}
    assert paths[name] in rows, f"{name} was skipped: {dict(result.failures).get(paths[name])}"
    feat = result.features[rows[paths[name]]]  # (1280,)
    assert feat.shape == (1280,) and np.isfinite(feat).all() and np.abs(feat).sum() > 0
    if name in refs:  # same pixels once converted to RGB -> same features
        np.testing.assert_allclose(feat, result.features[rows[refs[name]]], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_bad_image_is_reported_with_path_and_reason(image_zoo, name):
    paths, result, seconds, _ = image_zoo
    failures = dict(result.failures)
    assert paths[name] not in result.paths
    assert paths[name] in failures, f"{name} neither embedded nor reported"
    reason = failures[paths[name]]
    assert re.search(BAD_IMAGES[name][2], reason), f"{paths[name]}: {reason}"
    assert seconds < 60  # bombs are refused from the header: 400 M pixels never decode


def test_bomb_is_refused_from_its_header_in_a_blink(tmp_path, encoder):
    path = tmp_path / "bomb.png"
    path.write_bytes(_huge_1bit_png(20_000))
    assert path.stat().st_size < 100_000
    extractor = ImageFeatureExtractor(encoder, progress=False)
    t0 = time.perf_counter()
    result = extractor([path])
    assert time.perf_counter() - t0 < 2.0  # decoding 4e8 pixels would take far longer
    assert result.features.shape == (0, 1280)
    assert result.failures[0][0] == path and "decompression bomb" in result.failures[0][1]


def test_gan_image_loader_skips_bombs_and_broken_files(image_zoo):
    paths, *_ = image_zoo
    names = ["greyscale", "png_with_alpha", "bomb_20000x20000", "text_named_jpg", "gif"]
    images, keep = load_art_images([str(paths[n]) for n in names], size=32, workers=1)
    assert keep == [0, 1, 4] and images.shape == (3, 3, 32, 32)


# ---- label CSVs (art adapter) ------------------------------------------------------------


@pytest.fixture
def art_root(tmp_path) -> Path:
    root = tmp_path / "art"
    (root / "imgs").mkdir(parents=True)
    for name in ("a", "b", "c"):
        Image.fromarray(RGB).save(root / "imgs" / f"{name}.png")
    return root


def _csv(root: Path, text: str | bytes, name: str = "labels.csv") -> Path:
    path = root / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


CSV_ERRORS = {
    "missing_column": ("image,emotion\nimgs/a.png,sad\n", r"missing column\(s\) label"),
    "empty_csv": (b"", r"missing column\(s\) image, label \(found: no header\)"),
    "latin1_csv": ("image,label\nimgs/a.png,tristé\n".encode("latin-1"), "not a UTF-8"),
    "latin1_header": ("imagé,label\nimgs/a.png,sad\n".encode("latin-1"), "not a UTF-8"),
    "utf16_csv": ("image,label\nimgs/a.png,sad\n".encode("utf-16"), "not a UTF-8"),
    "wikiart_without_scores": ("ID\tImage URL\tArtist\n1\thttp://x/a.jpg\tX\n", "ImageOnly"),
}


@pytest.mark.parametrize("name", list(CSV_ERRORS))
def test_broken_label_file_is_a_value_error_naming_it(art_root, name):
    text, problem = CSV_ERRORS[name]
    if name.startswith("wikiart"):
        path = _csv(art_root, text, "labels.tsv")
        load = lambda: load_wikiart_emotions(path, root=art_root)  # noqa: E731
    else:
        path = _csv(art_root, text)
        load = lambda: load_art_corpus(art_root, labels=path)  # noqa: E731
    with pytest.raises(ValueError, match=problem) as err:
        load()
    assert str(err.value).startswith(f"{path}: "), err.value


def test_label_csv_rows_escaping_the_root_are_skipped(art_root):
    outside = art_root.parent / "secret.png"
    Image.fromarray(RGB).save(outside)
    rows = ["../../etc/passwd", "/etc/passwd", "../secret.png", "imgs/../../secret.png"]
    path = _csv(art_root, "image,label\nimgs/a.png,sad\n" + "".join(f"{r},sad\n" for r in rows))
    man = load_art_corpus(art_root, labels=path)
    assert [Path(it.path).name for it in man.items] == ["a.png"]
    assert man.skipped == [(r, "path escapes the root") for r in rows]


def test_label_csv_unknown_labels_are_dropped_and_counted(art_root):
    text = "image,label\nimgs/a.png,calm\nimgs/b.png,calm\nimgs/c.png,something else\nimgs/a.png,\n"
    man = load_art_corpus(art_root, labels=_csv(art_root, text))
    assert len(man) == 0
    assert dict(man.dropped) == {"calm": 2, "something else": 1, "(empty)": 1}


def test_label_csv_ragged_rows_bom_crlf_and_missing_images(art_root):
    text = (
        "\ufeff image , label \r\n"  # BOM, padded header, CRLF
        "imgs/a.png,sad,extra,cells\r\n"  # too many fields: extras ignored
        "imgs/b.png\r\n"  # too few: empty label, dropped
        " imgs/c.png , anger \r\n"
        "imgs/nope.png,sad\r\n"
    )
    man = load_art_corpus(art_root, labels=_csv(art_root, text))
    assert [(Path(it.path).name, it.label) for it in man.items] == [
        ("a.png", "sad"),
        ("c.png", "angry"),
    ]
    assert dict(man.dropped) == {"(empty)": 1}
    assert man.skipped == [(str(art_root / "imgs" / "nope.png"), "image not found")]


def test_header_only_csv_is_an_empty_manifest(art_root):
    man = load_art_corpus(art_root, labels=_csv(art_root, "image,label\n"))
    assert (len(man), man.skipped, dict(man.dropped)) == (0, [], {})


def test_artemis_rows_escaping_the_root_are_skipped(art_root):
    text = "art_style,painting,emotion\nimgs,a,sadness\n../..,etc/passwd,sadness\n"
    man = load_art_corpus(art_root, labels=_csv(art_root, text))
    assert [it.group for it in man.items] == ["a"]
    assert man.skipped == [("../../etc/passwd", "path escapes the root")]


def test_label_file_that_is_a_directory_names_it(art_root):
    (art_root / "labels.csv").mkdir()
    with pytest.raises(OSError, match="labels.csv"):
        load_art_corpus(art_root, labels=art_root / "labels.csv")


# ---- configs -----------------------------------------------------------------------------

YAML_ERRORS = {
    "unknown_key": (b"train:\n  epoch: 3\n", r"unknown config key train\.epoch"),
    "unknown_section": (b"trian:\n  epochs: 3\n", "unknown config key trian"),
    "wrong_type": (b"train:\n  epochs: many\n", r"train\.epochs: expected an integer, got 'many'"),
    "bool_for_float": (b"train:\n  mixup: true\n", r"train\.mixup: expected float"),
    "scalar_for_section": (b"audio: 5\n", "audio: expected a mapping"),
    "malformed_yaml": (b"audio: [\n  n_mels: 3\n", "{path}: cannot read config"),
    "tab_indent": (b"audio:\n\tn_mels: 3\n", "{path}: cannot read config"),
    "list_not_mapping": (b"- 1\n- 2\n", "{path}: a config file must hold a mapping"),
    "latin1_yaml": ("seed: 1 # é\n".encode("latin-1"), "{path}: cannot read config"),
    "python_tag": (
        b"seed: !!python/object/apply:os.system ['touch {marker}']\n",
        "{path}: cannot read config",
    ),
}


@pytest.mark.parametrize("name", list(YAML_ERRORS))
def test_bad_config_file_is_a_config_error_naming_the_key_or_file(tmp_path, name):
    text, problem = YAML_ERRORS[name]
    path, marker = tmp_path / "exp.yaml", tmp_path / "PWNED"
    path.write_bytes(text.replace(b"{marker}", str(marker).encode()))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert re.search(problem.replace("{path}", re.escape(str(path))), str(err.value)), err.value
    assert not marker.exists()


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("train.epochs=abc", r"train\.epochs: expected an integer, got 'abc'"),
        ("nokey=1", "unknown config key nokey"),
        ("audio.n_mels.x=3", r"audio\.n_mels: expected an integer"),
        ("classifier.arch=[1, 2]", r"classifier\.arch: expected str"),
        ("train.lr=fast", r"train\.lr: expected float, got 'fast'"),
        ("justtext", "override 'justtext' is not of the form key=value"),
    ],
)
def test_bad_override_is_a_config_error_naming_the_key(override, problem):
    with pytest.raises(ConfigError, match=problem):
        load_config(overrides=[override])


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("train.epochs=0", r"train\.epochs=0: must be > 0"),
        ("train.lr=-1e-3", r"train\.lr=-0\.001: must be > 0"),
        ("align.temperature=0", r"align\.temperature=0\.0: must be > 0"),
        ("classifier.dropout=1.0", r"classifier\.dropout=1\.0: must be in \[0, 1\)"),
        ("gan.ema=1", r"gan\.ema=1\.0: must be in \[0, 1\)"),
        ("gan.image_size=96", r"gan\.image_size=96: must be one of 128, 256"),
        ("gan.condition=text", r"gan\.condition='text': must be one of 'neighbours', 'voice'"),
        ("classifier.arch=transformer", r"classifier\.arch='transformer': must be one of"),
        ("data.audio_format=mp3", r"data\.audio_format='mp3': must be one of"),
        ("data.n_folds=1", r"data\.n_folds=1: must be >= 2"),
        ("data.test_fold=5", r"data\.test_fold=5: must be in \[0, data\.n_folds\)"),
        ("audio.fmax=9000", r"audio\.fmax=9000\.0: must be in \(fmin, sample_rate / 2\]"),
        ("audio.win_length=1024", r"audio\.win_length=1024: must be <= audio\.n_fft"),
        ("pipeline.k_neighbours=-2", r"pipeline\.k_neighbours=-2: must be > 0"),
        ("train.mixup=-0.5", r"train\.mixup=-0\.5: must be >= 0"),
        ("gan.r1=-1", r"gan\.r1=-1\.0: must be >= 0"),
    ],
)
def test_out_of_range_value_is_a_config_error_naming_the_key(override, problem):
    with pytest.raises(ConfigError, match=problem):
        load_config(overrides=[override])


def test_every_range_rule_names_a_real_key_and_defaults_pass():
    from sound2sight.config import _RULES, Config, validate

    cfg = validate(Config())  # the defaults satisfy every rule
    for key in _RULES:
        section, name = key.split(".")
        assert hasattr(getattr(cfg, section), name), key
    demo = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    assert validate(load_config(demo)) is not None


def test_missing_config_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path / 'nope.yaml'}: cannot read config"):
        load_config(tmp_path / "nope.yaml")


def test_exponent_floats_are_floats(tmp_path):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; a float field accepts it as 0.001."""
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  lr: 1e-3\n  weight_decay: 5E-4\n")
    cfg = load_config(path, overrides=["align.lr=2e-4"])
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.align.lr) == (0.001, 0.0005, 0.0002)
