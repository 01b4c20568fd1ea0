"""Losses: small pure functions of tensors; the training loops decide how to combine them.

>>> import torch
>>> z = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
>>> supcon(z, z, torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 0, 1, 1, 2, 2]),
...        temperature=0.1, exclude_self=True).shape
torch.Size([])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["supcon", "cross_modal_supcon", "prototype_loss", "loss_hinge_dis", "loss_hinge_gen"]


def supcon(
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    anchor_labels: torch.Tensor,
    candidate_labels: torch.Tensor,
    *,
    temperature: float,
    exclude_self: bool = False,
) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, "L_out") from anchors to candidates.

    Each anchor's softmax runs over all candidates; its positives are the candidates that
    share its label, and the loss is the mean negative log-probability of those positives.
    Anchors without any positive are left out.

    Parameters
    ----------
    anchors : Tensor (A, D)
        Unit-norm embeddings.
    candidates : Tensor (C, D)
        Unit-norm embeddings (the same tensor as ``anchors`` for a within-set loss).
    anchor_labels, candidate_labels : Tensor (A,), (C,)
        Integer class labels.
    temperature : float > 0
        Softmax temperature.
    exclude_self : bool
        Drop the diagonal (use when ``candidates`` is ``anchors``).

    Returns
    -------
    Tensor ()
        Scalar loss (zero when no anchor has a positive).

    >>> z = torch.eye(2)
    >>> round(float(supcon(z, z, torch.tensor([0, 1]), torch.tensor([0, 1]), temperature=0.1)), 4)
    0.0
    """
    logits = anchors @ candidates.T / temperature  # (A, C)
    pos = anchor_labels[:, None] == candidate_labels[None, :]  # (A, C)
    if exclude_self:
        eye = torch.eye(len(anchors), len(candidates), dtype=torch.bool, device=anchors.device)
        logits = logits.masked_fill(eye, float("-inf"))
        pos = pos & ~eye
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (A, C)
    n_pos = pos.sum(1)  # (A,)
    keep = n_pos > 0
    if not keep.any():
        return anchors.sum() * 0.0
    per_anchor = -log_prob.masked_fill(~pos, 0.0).sum(1)[keep] / n_pos[keep]  # (A_kept,)
    return per_anchor.mean()


def cross_modal_supcon(
    z_audio: torch.Tensor,
    y_audio: torch.Tensor,
    z_image: torch.Tensor,
    y_image: torch.Tensor,
    *,
    temperature: float,
    cross_weight: float = 1.0,
) -> torch.Tensor:
    """Within-modality plus weighted cross-modality supervised contrastive loss.

    ``within = (SupCon(a->a) + SupCon(i->i)) / 2`` and ``cross = (SupCon(a->i) + SupCon(i->a)) / 2``;
    the result is ``within + cross_weight * cross``.  The cross term is what puts an
    angry voice next to angry paintings; the within term keeps each modality clustered.

    Parameters
    ----------
    z_audio, z_image : Tensor (Na, D), (Ni, D)
        Unit-norm embeddings of the two modalities.
    y_audio, y_image : Tensor (Na,), (Ni,)
        Integer emotion labels.
    temperature : float > 0
        Softmax temperature.
    cross_weight : float >= 0
        Weight of the cross-modal term.

    >>> za = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    >>> y = torch.tensor([0, 0, 1, 1])
    >>> cross_modal_supcon(za, y, za, y, temperature=0.1).ndim
    0
    """
    within = 0.5 * (
        supcon(z_audio, z_audio, y_audio, y_audio, temperature=temperature, exclude_self=True)
        + supcon(z_image, z_image, y_image, y_image, temperature=temperature, exclude_self=True)
    )
    cross = 0.5 * (
        supcon(z_audio, z_image, y_audio, y_image, temperature=temperature)
        + supcon(z_image, z_audio, y_image, y_audio, temperature=temperature)
    )
    return within + cross_weight * cross


def prototype_loss(
    z: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, *, temperature: float
) -> torch.Tensor:
    """Cross-entropy of cosine similarities to one learnable anchor per class.

    Parameters
    ----------
    z : Tensor (N, D)
        Unit-norm embeddings (either modality).
    labels : Tensor (N,)
        Integer classes.
    prototypes : Tensor (K, D)
        Class anchors (normalised here).
    temperature : float > 0
        Softmax temperature.

    >>> p = torch.eye(3)
    >>> float(prototype_loss(p, torch.arange(3), p, temperature=0.01)) < 1e-6
    True
    """
    logits = z @ F.normalize(prototypes, dim=1).T / temperature  # (N, K)
    return F.cross_entropy(logits, labels)


def loss_hinge_dis(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: ``mean(relu(1 - real)) + mean(relu(1 + fake))``.

    >>> float(loss_hinge_dis(torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.5])))
    1.25
    """
    return F.relu(1.0 - logit_real).mean() + F.relu(1.0 + logit_fake).mean()


def loss_hinge_gen(logit_fake: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss: ``-mean(fake)``.

    >>> float(loss_hinge_gen(torch.tensor([1.0, -3.0])))
    1.0
    """
    return -logit_fake.mean()


def class_centroid_gap(
    z_audio: torch.Tensor, y_audio: torch.Tensor, z_image: torch.Tensor, y_image: torch.Tensor
) -> torch.Tensor:
    """Mean squared distance between each class's audio centroid and image centroid.

    Contrastive terms only order similarities, so each modality may keep its own tight
    cluster offset from the other's (the "modality gap"); this term pulls the per-class
    means of the two modalities together, so an angry voice lands *on* angry paintings.

    Parameters
    ----------
    z_audio, z_image : Tensor (Na, D), (Ni, D)
        Embeddings of the two modalities.
    y_audio, y_image : Tensor (Na,), (Ni,)
        Integer labels; classes missing from either side are skipped.

    >>> z = torch.eye(2); y = torch.tensor([0, 1])
    >>> float(class_centroid_gap(z, y, z, y)), float(class_centroid_gap(z, y, z.flip(0), y))
    (0.0, 2.0)
    """
    gaps = [
        (z_audio[y_audio == c].mean(0) - z_image[y_image == c].mean(0)).square().sum()
        for c in torch.unique(y_audio)
        if bool((y_image == c).any())
    ]
    return torch.stack(gaps).mean() if gaps else z_audio.sum() * 0.0
