"""Dataclass configs.

Defaults live here, one comment per field.  An experiment YAML holds only what
differs from them; ``--set a.b=v`` overrides one value.  An unknown key, a value of
the wrong type or out of range raises :class:`ConfigError` naming the key.

>>> cfg = load_config(overrides=["audio.n_mels=80", "classifier.arch=vgg"])
>>> cfg.audio.n_mels, cfg.classifier.arch
(80, 'vgg')
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "AudioConfig",
    "DataConfig",
    "ClassifierConfig",
    "TrainConfig",
    "TuneConfig",
    "ImageConfig",
    "AlignConfig",
    "GANConfig",
    "VOICE_SECTIONS",
    "voice_sections",
    "PipelineConfig",
    "Config",
    "ConfigError",
    "validate",
    "wave_views",
    "load_config",
    "config_to_dict",
    "config_from_dict",
    "save_config",
]


class ConfigError(ValueError):
    """A bad config key or value; the message names the key."""


@dataclass
class AudioConfig:
    sample_rate: int = 16000  # Hz every clip is resampled to
    duration: float = (
        3.0  # seconds after trimming; shorter clips are zero-padded, longer centre-cropped
    )
    n_fft: int = 512  # STFT size (samples)
    win_length: int = 400  # analysis window (samples, 25 ms at 16 kHz)
    hop_length: int = 160  # hop (samples, 10 ms at 16 kHz)
    n_mels: int = 64  # Mel bands
    fmin: float = 50.0  # lowest Mel edge (Hz)
    fmax: float = 8000.0  # highest Mel edge (Hz)
    top_db: float = 30.0  # silence-trim threshold below the clip's peak (dB)
    target_rms: float = 0.1  # RMS the voiced part is scaled to (-20 dBFS)
    silence_rms: float = 1e-4  # clips whose raw RMS is below this are "no speech detected"
    max_seconds: float = 600.0  # longest file accepted by the loader (s)


@dataclass
class DataConfig:
    audio_root: str = (
        ""  # speech corpus folder (RAVDESS/CREMA-D/TESS/SAVEE subfolders, or folder-per-label)
    )
    audio_format: str = "auto"  # auto | ravdess | crema_d | tess | savee | folder
    art_root: str = (
        ""  # artwork folder (folder-per-label) or the folder a labels CSV is relative to
    )
    art_labels: str = ""  # optional image,label CSV (relative paths resolve against art_root)
    art_description: str = ""  # how people should be told what the art is (e.g. "procedural demo paintings"); empty = counted from the manifest
    art_unlabelled: str = ""  # optional folder of paintings without labels (relative: under art_root); the GAN trains on them (gan.unlabelled)
    folds_csv: str = ""  # optional corpus,speaker,fold CSV; empty = folds assigned by speaker hash
    n_folds: int = 5  # speaker folds
    test_fold: int = 0  # fold held out as test for a single-run split
    val_fraction: float = (
        0.15  # share of the training speakers used for validation / early stopping
    )
    label_overrides: dict[str, str] = field(
        default_factory=dict
    )  # raw label -> emotion ("" drops it)
    cache_dir: str = ""  # feature cache; empty = $SOUND2SIGHT_CACHE or ~/.cache/sound2sight
    workers: int = 0  # preprocessing processes; 0 = one per CPU core


@dataclass
class ClassifierConfig:
    arch: str = "whisper"  # whisper (frozen Whisper encoder + head, voice/model.py) | vgg | resnet | crnn (log-Mel CNNs, voice/classifier.py)
    encoder: str = (
        "tiny.en"  # whisper: tiny.en | base | both | a CTranslate2 dir | an openai-whisper .pt
    )
    layers: str = "middle"  # whisper: layers the head weighs: middle (blocks 2..n-1) | all | last | comma list (0 = conv embedding)
    pooling: str = "attentive"  # whisper: attentive | mean (statistics pooling over time)
    attn_hidden: int = 128  # whisper: hidden width of the attention scorer
    max_seconds: float = (
        6.0  # whisper: longest voiced span encoded per clip (s); longer is centre-cropped
    )
    pretrained: str = ""  # a voice model shipped with the package (e.g. voice-cremad-tiny) instead of training one
    noise_floor_db: float = 0.0  # whisper: add white noise this many dB below the voice's RMS (e.g. 30; 0 = off) so clean and noisy recordings share one noise floor
    listen: str = ""  # whisper, inference only: the one altered-waveform view every recording the model reads goes through, after it is prepared and before the encoder: noise<dB> (white noise that many dB under the voice) or floor<dB> (white noise that raises a clip's floor, the 2nd percentile of its 32 ms frame RMS, to that many dB under the voice; a clip already above is left alone); seeded by the clip; training clips are left as recorded; "" = off (the shipped voice-cremad-tiny-speaker: see its card and benchmarks/voice_wild.py)
    feature_pool: int = 4  # whisper: encoder frames (20 ms) averaged per cached feature frame
    wave_augment: str = ""  # whisper, training only: extra views of each training clip, encoded from an altered waveform (comma list of speed<factor>, e.g. speed0.9 = 10 % slower and lower, noise<dB>, e.g. noise20 = white noise 20 dB under the voice, and channel<N>, N in 1..99, e.g. channel1,channel2,channel3 = three random recording channels per clip: room, noise, mic colour, band limit, DC, clipping; voice/channel.py); each batch takes one view at random; with speaker_norm each view is standardised by its own statistics per speaker; empty = off
    utterance_norm: str = ""  # whisper: each clip's feature frames centred on their own mean ("mean") or also scaled by their own std ("meanstd") inside the head, so that a recording's overall colour (microphone, room) is not an emotion cue; "" = off
    ensemble: int = 1  # whisper: heads trained with seeds seed .. seed+N-1 on one split, their probabilities averaged (one seed's cross-corpus accuracy is a lottery: benchmarks/voice_seeds.py); the shared space reads the first head's embedding
    calibration_augment: float = 0.0  # speaker_norm, training only: share of each batch's clips read as a calibration could read them (the statistics of the clip alone or of 3 or 10 random clips of its speaker, blended with the training frames' at a random weight; voice/speaker.py CalibrationViews) instead of by all their speaker's clips; 0 = off (measured at 0.5: one recording of a never-seen corpus read 5-7 points worse; BENCHMARKS.md › Voice model)
    speaker_norm: bool = False  # whisper, transductive: standardise features by each speaker's own statistics (voice/speaker.py; at inference: Sound2Sight.calibrate_to_speaker)
    width: int = 16  # channels of the first conv stage (16: ~16 MMAC per 3 s clip)
    depth: int = 3  # conv stages
    dropout: float = 0.3  # dropout before the classifier
    embed_dim: int = 128  # penultimate embedding size


@dataclass
class TrainConfig:
    epochs: int = 20  # maximum epochs (cosine LR schedule over this many)
    batch_size: int = 64  # clips per step
    lr: float = 2e-3  # AdamW learning rate
    weight_decay: float = 1e-2  # AdamW weight decay (the CNN rows of BENCHMARKS.md used 1e-3)
    patience: int = 6  # early-stopping patience (epochs without val macro-F1 gain)
    class_weighted: bool = True  # inverse-frequency class weights in the loss
    spec_augment: bool = True  # SpecAugment time and frequency masks
    freq_mask: int = 8  # widest frequency mask (Mel bands)
    time_mask: int = 30  # widest time mask (frames)
    mixup: float = 0.0  # mixup Beta(alpha, alpha); 0 disables
    gain_db: float = 0.0  # random spectral tilt over the Mel bands, +/- dB (10 dB = 1 std unit)
    crop_frames: int = 200  # random time crop per training clip (frames; 0 = whole clip)
    num_workers: int = 0  # DataLoader workers


@dataclass
class TuneConfig:
    n_trials: int = 20  # Optuna trials
    epochs: int = 12  # epochs per trial
    storage: str = ""  # Optuna storage URL; empty = sqlite:///<run>/tune/study.db
    study_name: str = "sound2sight-ser"  # shared name lets several machines join one study
    encoders: str = "tiny.en,base,both"  # whisper: encoders the search may pick (comma list)


@dataclass
class ImageConfig:
    image_size: int = 224  # EfficientNet input side (pixels)
    batch_size: int = 4  # images per forward pass (small single-threaded batches, one per worker, are fastest on CPU)
    max_pixels: int = 50_000_000  # decompression-bomb guard (width * height)
    num_workers: int = 0  # threads that decode and run the model; 0 = one per CPU core
    unlabelled: bool = False  # also extract features of unlabelled paintings (label "")


@dataclass
class AlignConfig:
    dim: int = 128  # shared-space dimension
    hidden: int = 256  # projection-head hidden width
    epochs: int = 40  # training epochs
    batch_per_class: int = 32  # samples per emotion per modality in each class-balanced batch
    lr: float = 1e-3  # AdamW learning rate
    temperature: float = 0.1  # contrastive temperature
    steps_per_epoch: int = 50  # class-balanced batches per epoch
    weight_decay: float = 1e-4  # AdamW weight decay
    dropout: float = 0.0  # image head: dropout on the standardised inputs and hidden layer
    audio_hidden: int = 0  # audio head hidden width; 0 = a linear audio head
    audio_dropout: float = 0.2  # audio head dropout
    cross_weight: float = 1.0  # weight of the cross-modal contrastive term (within-modal has 1)
    prototype_weight: float = 0.0  # weight of the learnable class-anchor loss; 0 disables
    gap_weight: float = 1.0  # weight of the audio/image class-centroid gap loss; 0 disables
    patience: int = 8  # early-stopping patience (epochs without val retrieval gain)
    map_points: int = 240  # points per modality in the t-SNE embedding map; 0 skips the map


@dataclass
class GANConfig:
    # Defaults: the CPU recipe of issue 20 (latent IC-GAN, 128 px); BENCHMARKS.md › Paintings has the figures
    image_size: int = 128  # painting side in pixels: 128 (TAEF2 latents 32x16x16) or 256 (32x32x32)
    z_dim: int = 128  # noise size (split over the seed and every generator block)
    g_ch: int = 64  # generator base width: blocks of 4x, 2x, 1x it at 128 px (a GPU affords more)
    g_mults: str = ""  # generator widths as multiples of g_ch, seed first, comma list (e.g. 4,2,2: the 16x16 stage as wide as the 8x8 one); "" = 4,2,1 at 128 px, 8,4,2,1 at 256 px
    noise_inject: bool = False  # per-pixel noise after every generator conv, scaled per channel (StyleGAN); off: an 8,000-step pilot scored FD 132.4 vs 126.4 (BENCHMARKS.md › Paintings)
    attention: bool = False  # SAGAN self-attention at the latent's half side (8x8 at 128 px): in the generator before its last block, in the discriminator after its first; off: 3.4 FD points ahead at 8,000 steps, 3.2 behind at 15,000 (BENCHMARKS.md › Paintings)
    lecam: float = 0.0  # weight of LeCam regularisation of the discriminator (Tseng et al. 2021, for small data: its logits on real latents held near the running mean of its logits on painted ones, and vice versa); 0 = off (an 8,000-step pilot at 0.3 scored FD 133.8 vs 126.4; BENCHMARKS.md)
    feature_match: float = 0.0  # weight of a feature-matching term in the generator's loss (mean discriminator features of real vs painted latents, Salimans et al. 2016); 0 = off (measured: wins at 8,000 steps, loses at 15,000 with streaky paintings; BENCHMARKS.md)
    r1: float = 0.0  # R1 penalty weight gamma (Mescheder et al. 2018): gamma/2 * the squared gradient of D's logit on real latents, every 4th D step, scaled by 4 (lazy, StyleGAN2); 0 = off (at 10 the 4,000-step paintings blurred; BENCHMARKS.md › Paintings)
    mbstd: bool = False  # minibatch standard deviation (StyleGAN): one channel of each 4-latent group's feature spread before D's last block; off: 10.3 FD points ahead at 8,000 steps, level at 15,000 (five draws of the judge), paler canvases (BENCHMARKS.md › Paintings)
    d_ch: int = 32  # discriminator base width: blocks of 1x, 2x, 4x it
    steps: int = 15000  # generator steps (~0.11 s each on 2 CPU cores at 128 px: ~29 min)
    batch_size: int = 32  # paintings per step
    lr_g: float = 1e-4  # generator Adam lr
    lr_d: float = 8e-4  # discriminator Adam lr (TTUR: at 2e-4 both, D stopped telling real from fake; 8e-4 beat 4e-4 and 1.6e-3, BENCHMARKS.md › Paintings)
    lr_decay_from: int = 0  # step from which both Adam lrs fall linearly to 0 at gan.steps; 0 = constant lrs (off: 15,000 constant + 5,000 annealed steps beat 20,000 constant by 1.8 FD points, inside the noise; BENCHMARKS.md › Paintings)
    ema: float = 0.999  # EMA decay of the sampling generator
    ema_start: int = 1000  # steps before the EMA starts averaging (it copies G until then)
    diffaugment: str = (
        "flip,translation"  # DiffAugment policy on the latents before D; empty disables
    )
    unlabelled: bool = True  # train on the unlabelled paintings too (data.art_unlabelled), conditioned through the image head
    condition: str = "neighbours"  # at inference, the painting's condition: neighbours (one of the k paintings nearest the voice's point) | voice (the point itself)
    k_condition: int = 8  # neighbours: how many of the nearest paintings' points to choose among
    sample_every: int = 1000  # steps between fixed-noise sample grids
    ckpt_every: int = 1000  # steps between checkpoints
    cond_dim: int = 128  # condition size (the shared-space dimension)
    d_steps: int = 1  # discriminator updates per generator step
    fd_samples: int = (
        0  # paintings scored by FD (Lite0) at each checkpoint to pick best; 0 = best is last
    )
    eval_per_class: int = 100  # generated images per emotion for consistency and diversity
    eval_fd: int = 500  # generated images for FD and KID
    log_every: int = 100  # steps between progress lines in gan/train.log


@dataclass
class PipelineConfig:
    n_images: int = 4  # generated images per call
    k_neighbours: int = 8  # nearest real artworks returned
    window_seconds: float = 3.0  # long recordings are cut into windows of this length
    hop_seconds: float = 1.5  # hop between windows
    vad: bool = True  # keep only the speech a voice-activity detector (silero) finds
    vad_threshold: float = (
        0.3  # silero speech probability threshold (0.5 rejects ~4 % of real clips)
    )
    min_speech: float = 0.5  # seconds of detected speech below which a recording is refused
    uncertain_margin: float = 0.15  # "uncertain between X and Y" when the top two are this close
    steer: bool = True  # move the voice's shared-space point into the decided emotion's region
    oversample: int = 4  # latents drawn per painting kept (the generator's latent emotion probe picks, before decoding); 1 = none
    int8_voice: bool = (
        False  # dynamic int8 Whisper encoder at inference (CPU; benchmarks/whisper_int8.py)
    )
    k_image_neighbours: int = 4  # artworks nearest each painting in image-feature space


@dataclass
class Config:
    seed: int = 0  # one seed per entry point
    device: str = "cpu"  # cpu | cuda | cuda:N
    data: DataConfig = field(default_factory=DataConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    gan: GANConfig = field(default_factory=GANConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)


def _check_value(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _from_dict(tp, value, prefix=key + ".")
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None) and value is None:
                return None
            try:
                return _check_value(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} matches none of {tp}")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): v for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return origin(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected float, got {value!r}") from None
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is str and value is None:
        return ""
    if tp in (int, float, str) and not isinstance(value, tp):
        if tp is str and isinstance(value, (int, float)):
            return str(value)
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def _from_dict(cls: type, data: dict, *, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]!s} (valid keys under "
            f"{prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(names))})"
        )
    kwargs = {k: _check_value(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


_POS = (lambda v: v > 0, "> 0")
_NONNEG = (lambda v: v >= 0, ">= 0")
_FRACTION = (lambda v: 0 <= v < 1, "in [0, 1)")


def _one_of(*options):
    return (lambda v: v in options, "one of " + ", ".join(map(repr, options)))


# value ranges checked when a config is loaded: a bad value fails here, naming its key,
# instead of deep inside a training loop
_POSITIVE_KEYS = """
audio.sample_rate audio.duration audio.n_fft audio.win_length audio.hop_length audio.n_mels
audio.top_db audio.target_rms audio.silence_rms audio.max_seconds classifier.width
classifier.depth classifier.embed_dim classifier.attn_hidden classifier.max_seconds
classifier.feature_pool classifier.ensemble train.epochs train.batch_size train.lr train.patience
tune.n_trials tune.epochs image.image_size image.batch_size image.max_pixels align.dim
align.epochs align.batch_per_class align.lr align.temperature align.steps_per_epoch
align.patience gan.z_dim gan.g_ch gan.d_ch gan.steps gan.batch_size gan.lr_g gan.lr_d
gan.sample_every gan.ckpt_every gan.cond_dim gan.d_steps gan.eval_per_class gan.eval_fd
gan.log_every
pipeline.n_images pipeline.k_neighbours pipeline.window_seconds pipeline.hop_seconds
pipeline.min_speech pipeline.vad_threshold pipeline.oversample
"""
_NONNEGATIVE_KEYS = """
audio.fmin classifier.noise_floor_db data.workers train.weight_decay train.freq_mask train.time_mask train.mixup
train.gain_db train.crop_frames train.num_workers image.num_workers align.hidden
align.weight_decay align.audio_hidden align.cross_weight align.prototype_weight
align.gap_weight align.map_points gan.fd_samples gan.ema_start gan.lr_decay_from gan.k_condition pipeline.uncertain_margin
pipeline.k_image_neighbours gan.feature_match gan.lecam gan.r1
"""
_FRACTION_KEYS = "data.val_fraction classifier.calibration_augment classifier.dropout align.dropout align.audio_dropout gan.ema"
_RULES: dict[str, tuple] = {
    **dict.fromkeys(_POSITIVE_KEYS.split(), _POS),
    **dict.fromkeys(_NONNEGATIVE_KEYS.split(), _NONNEG),
    **dict.fromkeys(_FRACTION_KEYS.split(), _FRACTION),
    "data.n_folds": (lambda v: v >= 2, ">= 2"),
    "classifier.arch": _one_of("whisper", "vgg", "resnet", "crnn"),
    "classifier.pooling": _one_of("attentive", "mean"),
    "classifier.utterance_norm": _one_of("", "mean", "meanstd"),
    "data.audio_format": _one_of("auto", "ravdess", "crema_d", "tess", "savee", "folder"),
    "gan.image_size": _one_of(128, 256),
    "gan.condition": _one_of("neighbours", "voice"),
}


_VIEW = re.compile(r"(speed|noise|floor|channel)(\d+(?:\.\d+)?)")


def wave_views(spec: str, key: str = "classifier.wave_augment") -> list[tuple[str, float]]:
    """``classifier.wave_augment`` (or ``key``) as ``(kind, value)`` pairs; a bad entry raises ConfigError.

    >>> wave_views("speed0.9, noise20")
    [('speed', 0.9), ('noise', 20.0)]
    >>> wave_views("channel1,channel2")
    [('channel', 1.0), ('channel', 2.0)]
    >>> wave_views("speed3")
    Traceback (most recent call last):
    ...
    sound2sight.config.ConfigError: classifier.wave_augment: 'speed3': a speed factor must be in [0.5, 2]
    """
    out = []
    for part in (p.strip() for p in str(spec).split(",")):
        if not part:
            continue
        m = _VIEW.fullmatch(part)
        if m is None:
            raise ConfigError(
                f"{key}: {part!r}: expected speed<factor> (e.g. speed0.9), "
                "noise<dB> (e.g. noise20), floor<dB> (e.g. floor25) or channel<N> (e.g. channel1)"
            )
        kind, value = m.group(1), float(m.group(2))
        if kind == "speed" and not 0.5 <= value <= 2.0:
            raise ConfigError(f"{key}: {part!r}: a speed factor must be in [0.5, 2]")
        if kind == "channel" and not (value.is_integer() and 1 <= value <= 99):
            raise ConfigError(f"{key}: {part!r}: a channel number must be an integer in 1..99")
        out.append((kind, value))
    return out


def validate(cfg: Config) -> Config:
    """Check value ranges and the few cross-field constraints; raise :class:`ConfigError`.

    >>> validate(config_from_dict({"train": {"epochs": 0}}))
    Traceback (most recent call last):
    ...
    sound2sight.config.ConfigError: train.epochs=0: must be > 0
    """
    for key, (ok, desc) in _RULES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if not ok(value):
            raise ConfigError(f"{key}={value!r}: must be {desc}")
    a, d = cfg.audio, cfg.data
    pairs = [
        ("audio.fmax", a.fmax, a.fmin < a.fmax <= a.sample_rate / 2, "in (fmin, sample_rate / 2]"),
        ("audio.win_length", a.win_length, a.win_length <= a.n_fft, "<= audio.n_fft"),
        ("data.test_fold", d.test_fold, 0 <= d.test_fold < d.n_folds, "in [0, data.n_folds)"),
        (
            "classifier.max_seconds",
            cfg.classifier.max_seconds,
            cfg.classifier.max_seconds <= 30.0,
            "<= 30 (Whisper's context)",
        ),
    ]
    for key, value, ok, desc in pairs:
        if not ok:
            raise ConfigError(f"{key}={value!r}: must be {desc}")
    if cfg.gan.g_mults:  # the generator's own parser (imports torch only when the key is set)
        from sound2sight.painting.model import generator_mults

        try:
            generator_mults(cfg.gan)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if cfg.classifier.ensemble > 1 and cfg.classifier.arch != "whisper":
        raise ConfigError(
            f"classifier.ensemble={cfg.classifier.ensemble}: only whisper heads are ensembled "
            f"(classifier.arch={cfg.classifier.arch!r})"
        )
    if cfg.classifier.calibration_augment > 0 and not cfg.classifier.speaker_norm:
        raise ConfigError(
            f"classifier.calibration_augment={cfg.classifier.calibration_augment}: needs "
            "classifier.speaker_norm=true (it varies the speaker statistics a clip is read with)"
        )
    if wave_views(cfg.classifier.wave_augment) and cfg.classifier.calibration_augment > 0:
        raise ConfigError(
            "classifier.wave_augment and classifier.calibration_augment together are not "
            "supported (a calibration view re-reads the clip as recorded, not its altered view)"
        )
    listen = wave_views(cfg.classifier.listen, key="classifier.listen")
    if len(listen) > 1 or any(kind not in ("noise", "floor") for kind, _ in listen):
        raise ConfigError(
            f"classifier.listen: {cfg.classifier.listen!r}: one view, noise<dB> (e.g. noise40) "
            "or floor<dB> (e.g. floor25)"
        )
    return cfg


# the sections a voice model's checkpoint or card is read with: what the head was trained
# with, nothing of the art stages (so a change to the painter never invalidates a voice model)
VOICE_SECTIONS = ("seed", "device", "data", "audio", "classifier", "train", "tune")


def voice_sections(data: dict) -> dict:
    """The :data:`VOICE_SECTIONS` of a plain config mapping (the rest dropped).

    >>> voice_sections({"audio": {}, "gan": {"resolution": 64}})
    {'audio': {}}
    """
    return {k: v for k, v in data.items() if k in VOICE_SECTIONS}


def config_from_dict(data: dict | None) -> Config:
    """Build a :class:`Config` from a (partial) nested mapping, checking every key and range."""
    return validate(_from_dict(Config, data or {}))


def config_to_dict(cfg: Any) -> dict:
    """The full nested mapping of a config dataclass."""
    return dataclasses.asdict(cfg)


def _set_nested(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {part} is not a section")
    node[parts[-1]] = value


def _deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    path: str | Path | None = None,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict | None = None,
) -> Config:
    """Defaults, then ``base``, then the YAML at ``path``, then ``key=value`` overrides.

    Parameters
    ----------
    path : str | Path | None
        A YAML file holding only the values that differ from the defaults.
    overrides : sequence of str
        ``"a.b=value"`` strings; values are parsed as YAML scalars.
    base : dict | None
        A partial mapping applied before the file (e.g. a run's saved config).
    """
    data: dict = dict(base or {})
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read config ({exc})") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config file must hold a mapping")
        data = _deep_merge(data, loaded)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        _set_nested(data, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
    return config_from_dict(data)


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically)."""
    from sound2sight.io import atomic_write_text

    return atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
