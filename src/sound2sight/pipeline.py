"""Inference: one object, one ``__call__``.

>>> pipe = Sound2Sight.from_run("runs/demo")          # doctest: +SKIP
>>> result = pipe("voice.wav", n_images=4, seed=0)     # doctest: +SKIP
>>> result.emotion, result.embedding.shape, len(result.images)  # doctest: +SKIP
('sad', (128,), 4)

Long recordings are windowed: silence is trimmed from the ends, then the voiced part
is cut into ``pipeline.window_seconds`` windows every ``pipeline.hop_seconds`` (the
last window aligned to the end); each window is RMS-normalised and classified, the
class probabilities are averaged, and the shared-space embedding is the normalised
mean of the windows' embeddings.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sound2sight.coherence import PaintingJudge, class_centroids, steer
from sound2sight.config import Config
from sound2sight.labels import EMOTIONS
from sound2sight.voice.audio import (
    AudioError,
    LogMel,
    decode_audio,
    preprocess_waveform,
    trim_silence,
)
from sound2sight.voice.calibration import decide
from sound2sight.voice.speaker import SpeakerStats

__all__ = ["Neighbour", "Result", "Sound2Sight", "save_result", "export_bundle"]

log = logging.getLogger(__name__)


@dataclass
class Neighbour:
    path: str  # the real artwork's file (as recorded at training time)
    label: str  # its emotion label
    score: float  # cosine similarity in the shared space, in [-1, 1]
    thumbnail: np.ndarray  # (h, w, 3) uint8


@dataclass
class Result:
    emotion: str  # argmax of ``probabilities``
    probabilities: dict[str, float]  # emotion -> probability (sums to 1)
    embedding: np.ndarray  # (128,) unit vector in the shared space
    images: list[np.ndarray]  # generated paintings, each (H, W, 3) uint8
    neighbours: list[Neighbour]  # nearest real artworks, best first
    n_windows: int = 1  # analysis windows pooled
    timings_ms: dict[str, float] = field(default_factory=dict)  # per-stage wall time
    uncertain: tuple[str, str] | None = None  # the two closest emotions when the top two are near
    image_neighbours: list[list[Neighbour]] = field(
        default_factory=list
    )  # per painting: the artworks nearest to it in image-feature space
    provenance: dict[str, str] = field(
        default_factory=dict
    )  # part -> what it was trained on, e.g. {"voice": "pretrained on CREMA-D, 60 actors"}
    painted_emotions: list[str] = field(
        default_factory=list
    )  # the image-emotion probe's reading of each painting
    steered: float = 0.0  # share of the way the voice's point was moved to the decided emotion
    calibrated_on: int = 0  # recordings of the speaker the voice was standardised by (0: none)
    voice_features: np.ndarray | None = field(
        default=None, repr=False
    )  # (windows, layers, frames, channels) float16: the encoder's raw output for this recording
    # (speaker-normalised voice models only: what calibrating to its speaker needs)


class Sound2Sight:
    """Voice in, emotion + paintings + nearest real artworks out.

    Build it with :meth:`from_run` (a run directory or an exported bundle).
    """

    def __init__(
        self,
        *,
        cfg: Config,
        classifier,
        joint,
        generator,
        gallery,
        voice=None,
        provenance: dict[str, str] | None = None,
        device: str = "cpu",
    ) -> None:
        from sound2sight.retrieval import NearestArtworks

        self.cfg = cfg
        self.device = torch.device(device)
        self.classifier = classifier.to(self.device).eval()
        if voice is None and not getattr(classifier, "takes_mels", True):
            from sound2sight.voice.model import VoiceEncoder

            voice = VoiceEncoder.load(
                cfg.classifier.encoder, feature_pool=cfg.classifier.feature_pool
            )
        if voice is not None and cfg.pipeline.int8_voice and self.device.type == "cpu":
            voice = voice.quantised()  # measured: no accuracy lost on unseen speakers
        self.voice = None if voice is None else voice.to(self.device).eval()  # frozen Whisper
        self.joint = joint.to(self.device).eval()
        self.generator = generator.to(self.device).eval()  # paints TAEF2 latents
        # the gallery paintings' points: what an instance-conditioned painter is conditioned on
        self.condition_points = torch.from_numpy(np.asarray(gallery.embeddings, np.float32))
        self.logmel = LogMel(cfg.audio).to(self.device)
        self.gallery = gallery
        self.nearest = NearestArtworks(gallery)
        self.provenance = provenance or {}
        labels = np.asarray(gallery.labels).astype(str)
        present = [e for e in EMOTIONS if (labels == e).any()]
        self.centroids = (
            class_centroids(np.asarray(gallery.embeddings, np.float32), labels, EMOTIONS)
            if len(present) == len(EMOTIONS)
            else None
        )
        self.speaker = None  # SpeakerStats from calibrate_to_speaker (speaker_norm models)
        self.judge = None  # image-emotion probe + image-space neighbours (needs features)
        if gallery.features is not None and len(present) == len(EMOTIONS) and len(labels) >= 6:
            self.judge = PaintingJudge(gallery.features, labels, EMOTIONS)

    @classmethod
    def from_run(cls, run_dir: str | Path, *, device: str = "cpu") -> Sound2Sight:
        """Load every stage from a run directory (or a bundle written by :func:`export_bundle`)."""
        from sound2sight import bundle

        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir}: no such run directory")
        return cls(device=device, **bundle.load_parts(run_dir))

    # ---- audio -> windows -> Mels
    def _waveform(self, audio, sample_rate: int | None) -> np.ndarray:
        a = self.cfg.audio
        if isinstance(audio, (bytes, bytearray)):
            return decode_audio(
                bytes(audio), name="upload", sample_rate=a.sample_rate, max_seconds=a.max_seconds
            )
        if isinstance(audio, (str, Path)):
            from sound2sight.voice.audio import load_audio

            return load_audio(audio, sample_rate=a.sample_rate, max_seconds=a.max_seconds)
        wave = np.asarray(audio, dtype=np.float32)
        if sample_rate is None:
            raise ValueError("an array input needs sample_rate=")
        if wave.ndim == 2:  # (n, channels) or (channels, n): downmix along the short axis
            wave = wave.mean(axis=int(np.argmin(wave.shape)))
        if not np.isfinite(wave).all():
            raise AudioError("array: audio contains NaN or infinite samples")
        if sample_rate != a.sample_rate:
            import soxr

            wave = soxr.resample(wave, sample_rate, a.sample_rate, quality="HQ").astype(np.float32)
        return wave

    def _cut(self, wave: np.ndarray, name: str, *, win_s: float, hop_s: float, prepare) -> list:
        """The voiced part of ``wave``, cut into ``win_s`` windows every ``hop_s`` (the last
        one aligned to the end) when longer than one window; each window ``prepare``-d.

        Silent windows inside a long take are skipped; no window left is an error.
        """
        a = self.cfg.audio
        if wave.size == 0:
            raise AudioError(f"{name}: zero-length audio (no samples)")
        voiced = trim_silence(wave, top_db=a.top_db)
        win, hop = int(win_s * a.sample_rate), int(hop_s * a.sample_rate)
        if len(voiced) <= win:
            return [prepare(wave)]
        starts = list(range(0, len(voiced) - win + 1, hop))
        if starts[-1] != len(voiced) - win:
            starts.append(len(voiced) - win)
        chunks = []
        for s in starts:
            try:
                chunks.append(prepare(voiced[s : s + win]))
            except AudioError:
                continue
        if not chunks:
            raise AudioError(f"{name}: no speech detected (the recording is silent)")
        return chunks

    def _windows(self, wave: np.ndarray, name: str) -> np.ndarray:
        """CNN path: fixed-length, preprocessed ``pipeline.window_seconds`` windows ``(W, n)``."""
        p = self.cfg.pipeline
        chunks = self._cut(
            wave,
            name,
            win_s=p.window_seconds,
            hop_s=p.hop_seconds,
            prepare=lambda w: preprocess_waveform(w, self.cfg.audio, name=name),
        )
        return np.stack(chunks)  # (n_windows, n)

    def _voice_windows(self, wave: np.ndarray, name: str) -> list[np.ndarray]:
        """Whisper path: ``classifier.max_seconds`` windows (hop: half a window), each
        prepared as in training and read through the head's listening view
        (``classifier.listen``), at its own length."""
        from sound2sight.voice.cache import listen, prepare_voice

        m = self.cfg.classifier.max_seconds
        return self._cut(
            wave,
            name,
            win_s=m,
            hop_s=m / 2,
            prepare=lambda w: listen(prepare_voice(w, self.cfg, name=name), self.cfg),
        )

    def _features(self, wave: np.ndarray, name: str) -> tuple[torch.Tensor, int]:
        """What the classifier takes, and the number of analysis windows."""
        if self.voice is None:
            windows = self._windows(wave, name)
            return self.logmel(torch.from_numpy(windows).to(self.device)), len(windows)  # (W, M, T)
        chunks = self._voice_windows(wave, name)
        n = torch.tensor([len(c) for c in chunks])
        batch = torch.zeros(len(chunks), int(n.max()))
        for i, c in enumerate(chunks):
            batch[i, : len(c)] = torch.from_numpy(c)
        return self.voice(batch.to(self.device), n), len(chunks)  # (W, L, T, C)

    def _speech(self, audio, sample_rate: int | None) -> tuple[str, np.ndarray]:
        """The recording's name and its samples; only the speech when ``pipeline.vad``."""
        name = str(audio) if isinstance(audio, (str, Path)) else "upload"
        wave = self._waveform(audio, sample_rate)
        if self.cfg.pipeline.vad:  # only what a voice-activity detector calls speech
            from sound2sight.voice.vad import extract_speech

            if wave.size == 0:
                raise AudioError(f"{name}: zero-length audio (no samples)")
            wave = extract_speech(
                wave,
                name=name,
                min_speech=self.cfg.pipeline.min_speech,
                threshold=self.cfg.pipeline.vad_threshold,
            )
        return name, wave

    @property
    def speaker_normalised(self) -> bool:
        """Whether the voice model was trained on per-speaker standardised features."""
        return self.voice is not None and bool(self.classifier.cfg.speaker_norm)

    @staticmethod
    def _per_speaker(feats: torch.Tensor, stats: SpeakerStats) -> torch.Tensor:
        """``feats`` standardised by a speaker's ``stats`` (speaker-normalised models)."""
        from sound2sight.voice.speaker import standardise

        return torch.from_numpy(standardise(feats.cpu().numpy(), stats)).to(feats.device)

    def speaker_from(self, recordings) -> SpeakerStats:
        """A speaker's statistics from the raw voice features of several of their
        recordings (each ``(windows, layers, frames, channels)``, e.g.
        ``Result.voice_features``), estimated the way :func:`sound2sight.voice.speaker.calibrate`
        does: pulled towards the training frames' statistics as far as a few recordings'
        own statistics are likely to be their emotions rather than their voice."""
        from sound2sight.voice.speaker import calibrate

        c = self.classifier
        return calibrate(list(recordings), c.population_stats(), c.shrink_prior())

    @torch.inference_mode()
    def calibrate_to_speaker(self, recordings, *, sample_rate: int | None = None):
        """Opt-in, transductive: learn one speaker's feature statistics from several of
        their recordings (any emotions, unlabelled); later calls are standardised by them.

        Only for a voice model trained with ``classifier.speaker_norm=true`` (without a
        calibration such a model reads each recording on its own: :meth:`speaker_from` of it).  A recording that
        fails (silent, corrupt, ...) is skipped with a warning; none left is an error.
        :meth:`forget_speaker` undoes it.  Returns the :class:`~sound2sight.voice.speaker.SpeakerStats`.
        """
        if not self.speaker_normalised:
            raise ValueError(
                "this voice model was trained without classifier.speaker_norm=true: "
                "calibrating to a speaker would change what it was trained on"
            )
        parts, failed = [], []
        for rec in recordings:
            try:
                name, wave = self._speech(rec, sample_rate)
                parts.append(self._features(wave, name)[0].cpu().numpy())  # (W, L, T, C)
            except (AudioError, OSError, ValueError) as err:
                failed.append(str(err))
                log.warning("calibration: skipped %s", err)
        if not parts:
            raise AudioError(
                f"calibration: no usable recording ({'; '.join(failed) or 'none given'})"
            )
        self.speaker = self.speaker_from(parts)
        log.info(
            "calibrated to a speaker: %d recordings, %d frames", len(parts), self.speaker.n_frames
        )
        return self.speaker

    def forget_speaker(self) -> None:
        """Drop the calibration: back to the statistics of the model's training frames."""
        self.speaker = None

    @torch.inference_mode()
    def __call__(
        self,
        audio,
        *,
        sample_rate: int | None = None,
        n_images: int | None = None,
        k: int | None = None,
        seed: int | None = 0,
        generator: torch.Generator | None = None,
        speaker_recordings=None,
    ) -> Result:
        """Classify, embed, paint and find neighbours for one recording.

        Parameters
        ----------
        audio : path | bytes | np.ndarray
            A file path, the encoded bytes of a file, or samples (then ``sample_rate``).
        n_images : int >= 0
            Paintings to generate (default ``pipeline.n_images``).
        k : int >= 0
            Nearest real artworks to return (default ``pipeline.k_neighbours``).
        seed : int | None
            Seeds the noise when ``generator`` is not given.
        generator : torch.Generator | None
            Explicit source of randomness for the GAN noise.
        speaker_recordings : list of np.ndarray | SpeakerStats | None
            The ``voice_features`` of earlier results of the same speaker (or their
            :func:`~sound2sight.voice.speaker.recording_stats`): this recording is
            then standardised by the statistics of those and itself (:meth:`speaker_from`)
            instead of :meth:`calibrate_to_speaker`'s; ``Result.calibrated_on`` says how
            many recordings that was.  Only for a speaker-normalised voice model.
        """
        t = {"start": time.perf_counter()}
        name, wave = self._speech(audio, sample_rate)
        feats, n_windows = self._features(wave, name)
        raw, speaker = None, self.speaker
        calibrated_on = 0 if speaker is None else speaker.n_clips
        if self.speaker_normalised:  # what a calibration of this speaker needs of the take
            from sound2sight.voice.speaker import alone_stats

            raw = feats.cpu().numpy().astype(np.float16)
            c = self.classifier
            if speaker_recordings is not None:
                speaker = self.speaker_from([*speaker_recordings, raw])
                calibrated_on = len(speaker_recordings) + 1
            elif speaker is None:  # this recording alone (shrunk, or the training statistics)
                speaker = alone_stats(raw, c.population_stats(), c.shrink_prior())
            feats = self._per_speaker(feats, speaker)
        t["features"] = time.perf_counter()
        logits, emb = self.classifier.logits_and_embedding(feats)  # (W, 3), (W, embed_dim)
        t_soft = getattr(self.classifier, "temperature", None)  # fitted on validation speakers
        probs = torch.softmax(logits / (1.0 if t_soft is None else t_soft), dim=-1).mean(0)  # (3,)
        t["classify"] = time.perf_counter()
        p = probs.cpu().numpy()
        emotion, uncertain = decide(p, EMOTIONS, margin=self.cfg.pipeline.uncertain_margin)
        z = self.joint.embed_audio(emb).mean(0, keepdim=True)  # (1, 128)
        z = torch.nn.functional.normalize(z, dim=-1)[0].cpu().numpy()  # (128,)
        shift = 0.0
        if self.cfg.pipeline.steer and self.centroids is not None:  # follow the decision
            z, shift = steer(z, EMOTIONS.index(emotion), self.centroids)
        t["project"] = time.perf_counter()
        n = self.cfg.pipeline.n_images if n_images is None else n_images
        images, image_nb, painted = self._paint(z, emotion, n, seed, generator)
        t["generate"] = time.perf_counter()
        k = self.cfg.pipeline.k_neighbours if k is None else k
        neighbours = []
        if k > 0:
            idx, sims = self.nearest.search(z[None], k=k)  # (1, k), (1, k)
            neighbours = [self._neighbour(i, s) for i, s in zip(idx[0], sims[0], strict=True)]
        t["neighbours"] = time.perf_counter()
        keys = list(t)
        timings = {b: (t[b] - t[a]) * 1000 for a, b in zip(keys, keys[1:], strict=False)}
        timings["total"] = (t[keys[-1]] - t["start"]) * 1000
        return Result(
            emotion=emotion,
            probabilities={e: float(v) for e, v in zip(EMOTIONS, p, strict=True)},
            embedding=z,
            images=images,
            neighbours=neighbours,
            n_windows=n_windows,
            timings_ms=timings,
            uncertain=uncertain,
            image_neighbours=image_nb,
            provenance=dict(self.provenance),
            painted_emotions=painted,
            steered=shift,
            calibrated_on=calibrated_on,
            voice_features=raw,
        )

    def _neighbour(self, i: int, score: float) -> Neighbour:
        g = self.gallery
        return Neighbour(str(g.paths[i]), str(g.labels[i]), float(score), g.thumbnails[i])

    def _paint(self, z: np.ndarray, emotion: str, n: int, seed, generator):
        """``n`` paintings from the voice's point ``z``.

        Each candidate is conditioned on one of the gallery paintings nearest ``z``
        (``gan.condition``); ``oversample`` times more latents than kept are drawn, the
        generator's latent emotion probe keeps the ones most like ``emotion``, and only
        those are decoded by TAEF2.  With gallery features, each kept painting also gets
        the image-emotion probe's reading and its nearest gallery paintings in image space.
        """
        if n <= 0:
            return [], [], []
        from sound2sight.painting.model import inference_conditions, sample_latents
        from sound2sight.painting.taef2 import decode_latents

        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else seed)
        pc, G = self.cfg.pipeline, self.generator
        draw = n * max(pc.oversample, 1)
        voice = torch.from_numpy(z).float()[None].expand(draw, -1)
        cond = inference_conditions(voice, self.condition_points, G.cfg, generator=generator)
        latents = sample_latents(G, cond, generator=generator)  # (draw, 32, s, s)
        keep = torch.arange(n)
        if draw > n:  # judged in latent space: nothing but the kept ones is decoded
            score = G.probe(latents)[:, EMOTIONS.index(emotion)]
            keep = torch.argsort(-score.cpu(), stable=True)[:n]
        images = list(decode_latents(latents[keep.to(latents.device)]))
        if self.judge is None or pc.k_image_neighbours == 0:
            return images, [], []
        feats = self.judge.features(images)  # (n, 1280) Lite0, the kept paintings only
        probs = self.judge.emotion_probs(feats)  # (n, 3)
        idx, sims = self.judge.nearest(feats, k=pc.k_image_neighbours)
        image_nb = [
            [self._neighbour(i, s) for i, s in zip(row, srow, strict=True)]
            for row, srow in zip(idx, sims, strict=True)
        ]
        painted = [EMOTIONS[int(p.argmax())] for p in probs]
        return images, image_nb, painted


def save_result(result: Result, out_dir: str | Path, *, name: str = "voice") -> Path:
    """Write the images, a contact sheet and a JSON summary; return the contact sheet path."""
    from sound2sight.io import atomic_write_bytes, atomic_write_json
    from sound2sight.report import contact_sheet

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    files = []
    for i, img in enumerate(result.images):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        files.append(atomic_write_bytes(out_dir / f"{name}_painted_{i}.png", buf.getvalue()).name)
    sheet = contact_sheet(result, out_dir / f"{name}_sheet.png")
    atomic_write_json(
        out_dir / f"{name}.json",
        {
            "emotion": result.emotion,
            "probabilities": result.probabilities,
            "images": files,
            "contact_sheet": sheet.name,
            "neighbours": [
                {"path": n.path, "label": n.label, "score": round(n.score, 4)}
                for n in result.neighbours
            ],
            "uncertain": list(result.uncertain) if result.uncertain else None,
            "painted_emotions": result.painted_emotions,
            "image_neighbours": [
                [{"path": n.path, "label": n.label, "score": round(n.score, 4)} for n in row]
                for row in result.image_neighbours
            ],
            "steered": round(result.steered, 3),
            "provenance": result.provenance,
            "n_windows": result.n_windows,
            "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
        },
    )
    return sheet


def export_bundle(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Export a run as a small self-contained bundle (see :mod:`sound2sight.bundle`)."""
    from sound2sight import bundle

    return bundle.export(Path(run_dir), Path(out_dir))
