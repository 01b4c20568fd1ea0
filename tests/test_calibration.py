"""Known-answer tests of temperature scaling, ECE and the "uncertain" rule."""

from __future__ import annotations

import numpy as np
import pytest

from sound2sight.voice.calibration import (
    decide,
    expected_calibration_error,
    fit_temperature,
    plot_reliability,
    reliability_table,
    softmax,
)

EMOTIONS = ["angry", "happy", "sad"]


def sample_labels(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One label per row drawn from that row's probabilities (inverse-CDF, vectorised)."""
    u = rng.random((len(probs), 1))
    return (probs.cumsum(axis=1) < u).sum(axis=1).clip(max=probs.shape[1] - 1)


@pytest.fixture(scope="module")
def overconfident():
    """Labels drawn from softmax(z); the model reports 2.5 * z, i.e. T_true = 2.5."""
    rng = np.random.default_rng(0)
    z = 2.0 * rng.normal(size=(4000, 4))
    return 2.5 * z, sample_labels(rng, softmax(z)), 2.5


@pytest.mark.parametrize("t_true", [0.5, 1.0, 2.5, 6.0])
def test_temperature_recovers_known_t(t_true):
    rng = np.random.default_rng(1)
    z = 2.0 * rng.normal(size=(4000, 4))
    labels = sample_labels(rng, softmax(z))
    t = fit_temperature(t_true * z, labels)
    assert abs(t - t_true) / t_true < 0.1
    assert fit_temperature(t_true * z, labels) == t  # deterministic


def test_temperature_stays_in_bounds():
    logits = np.array([[10.0, 0.0], [10.0, 0.0]])
    assert fit_temperature(logits, np.array([1, 1]), bounds=(0.5, 4.0)) == pytest.approx(
        4.0, rel=1e-3
    )
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(logits, np.array([0, 2]))


def test_ece_zero_when_each_bin_is_calibrated():
    # 10 predictions at 0.8 confidence, 8 right; 10 at 0.6, 6 right
    probs = np.array([[0.8, 0.2]] * 10 + [[0.4, 0.6]] * 10)
    labels = np.array([0] * 8 + [1] * 2 + [1] * 6 + [0] * 4)
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.0, abs=1e-12)


def test_ece_large_when_overconfident():
    probs = np.array([[0.99, 0.01]] * 100)  # 99 % sure, right half the time
    labels = np.array([0, 1] * 50)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.49)


def test_ece_drops_after_fitting_temperature(overconfident):
    logits, labels, _ = overconfident
    half = len(labels) // 2  # fit on one half, measure on the other
    t = fit_temperature(logits[:half], labels[:half])
    before = expected_calibration_error(softmax(logits[half:]), labels[half:])
    after = expected_calibration_error(softmax(logits[half:], temperature=t), labels[half:])
    assert before > 0.1 and after < 0.03 and after < before / 4
    # temperature never changes the predicted class
    assert (softmax(logits, temperature=t).argmax(1) == logits.argmax(1)).all()


def test_reliability_table_counts_every_prediction(overconfident):
    logits, labels, _ = overconfident
    table = reliability_table(softmax(logits), labels, n_bins=15)
    assert table.count.sum() == len(labels) and table.edges.shape == (16,)
    full = table.count > 0
    assert (
        (table.confidence[full] >= table.edges[:-1][full])
        & (table.confidence[full] <= table.edges[1:][full])
    ).all()


def test_plot_reliability_writes_png(tmp_path, overconfident):
    logits, labels, t = overconfident
    out = plot_reliability(
        softmax(logits), softmax(logits, temperature=t), labels, tmp_path / "r" / "rel.png"
    )
    assert out == tmp_path / "r" / "rel.png"
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["rel.png"]  # no temp file left


@pytest.mark.parametrize(
    "probs,margin,expected",
    [
        ({"angry": 0.7, "happy": 0.2, "sad": 0.1}, 0.15, ("angry", None)),
        ({"angry": 0.45, "happy": 0.40, "sad": 0.15}, 0.15, ("angry", ("angry", "happy"))),
        ({"angry": 0.2, "happy": 0.35, "sad": 0.45}, 0.15, ("sad", ("sad", "happy"))),
        ({"angry": 0.4, "happy": 0.4, "sad": 0.2}, 0.15, ("angry", ("angry", "happy"))),  # tie
        ({"angry": 0.4, "happy": 0.4, "sad": 0.2}, 0.0, ("angry", None)),  # 0 never uncertain
        ({"angry": 0.625, "happy": 0.375}, 0.25, ("angry", None)),  # gap == margin: certain
        ({"sad": 1.0}, 0.15, ("sad", None)),  # one class
    ],
)
def test_decide(probs, margin, expected):
    assert decide(probs, None, margin=margin) == expected


def test_decide_array_needs_matching_labels():
    assert decide(np.array([0.1, 0.5, 0.4]), EMOTIONS) == ("happy", ("happy", "sad"))
    with pytest.raises(ValueError, match="labels"):
        decide(np.array([0.5, 0.5]), EMOTIONS)
    with pytest.raises(ValueError, match="no probabilities"):
        decide({}, None)
