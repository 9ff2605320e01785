"""Whether a precision ranks images as the fp32 reference does: the tie-aware rule, with strict identity beside it.

A precision is faithful when, for at least 99% of texts, every image in its top 10 scores, by the fp32
reference's own scores, within 1e-3 of the reference's 10th; and R@1/5/10 are within 1 point of the reference's.
"Strict" (the same ten images as the reference) is reported beside it: it also counts swaps among pictures the
reference itself scores alike (a tenth and an eleventh 1e-4 apart), which no user can see and no model can tell.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

TIE = 1e-3  # scores this close, by the reference, are a tie
MIN_TEXTS = 0.99  # share of texts whose top 10 must hold only ties of the reference's 10th or better
MAX_RECALL_GAP = 1.0  # points of R@1/5/10
K = 10
RECALL_AT = (1, 5, 10)


@dataclass(frozen=True)
class Fidelity:
    """One precision's rankings judged against the fp32 reference's, over the same texts and images."""

    texts: int
    tie_aware: float  # share of texts whose top K all score, by the reference, within TIE of its Kth or better
    strict: float  # share of texts whose top-K set is the reference's
    recall: tuple[float, ...]  # R@1/5/10 in percent (empty without right answers)
    reference_recall: tuple[float, ...]
    near_ties: float  # share of texts whose reference Kth and K+1th score within TIE: how much room for swaps

    @property
    def recall_gap(self) -> float:
        """The largest difference of R@1/5/10 from the reference's, in points."""
        return max((abs(a - b) for a, b in zip(self.recall, self.reference_recall)), default=0.0)

    @property
    def faithful(self) -> bool:
        """The rule: tie-aware for >= 99% of texts and R@1/5/10 within 1 point."""
        return self.tie_aware >= MIN_TEXTS and self.recall_gap <= MAX_RECALL_GAP

    def as_dict(self) -> dict[str, object]:
        """For benchmark JSON."""
        return {"texts": self.texts, "tie_aware": self.tie_aware, "strict": self.strict,
                "recall": list(self.recall), "reference_recall": list(self.reference_recall),
                "recall_gap": self.recall_gap, "near_ties": self.near_ties, "faithful": self.faithful}


def top_k(scores: np.ndarray, k: int = K) -> np.ndarray:
    """Column indices of the k best scores per row, best first (stable: ties keep column order)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def recall_at(ranked: np.ndarray, truth: Sequence[Collection[int]]) -> tuple[float, ...]:
    """R@1/5/10 in percent: a text counts at k when one of its right columns is in its top k."""
    hits = [[bool(set(row[:k].tolist()) & set(right)) for row, right in zip(ranked, truth)] for k in RECALL_AT]
    return tuple(100.0 * float(np.mean(found)) for found in hits)


def judge(reference: np.ndarray, candidate: np.ndarray, truth: Sequence[Collection[int]] | None = None,
          k: int = K) -> Fidelity:
    """Judge candidate text-by-image scores [texts, images] against the reference's, with each text's right
    image columns (truth) for R@1/5/10."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape or reference.ndim != 2 or reference.shape[1] <= k:
        raise ValueError(f"need two [texts, >{k} images] score matrices, got {reference.shape}, {candidate.shape}")
    ours, theirs = top_k(candidate, k), top_k(reference, k)
    ordered = -np.sort(-reference, axis=1)
    kth, next_score = ordered[:, k - 1], ordered[:, k]
    lowest = np.take_along_axis(reference, ours, axis=1).min(axis=1)  # the reference's score of our worst pick
    strict = np.mean([set(a.tolist()) == set(b.tolist()) for a, b in zip(ours, theirs)])
    return Fidelity(
        texts=len(reference),
        tie_aware=float(np.mean(lowest >= kth - TIE)),
        strict=float(strict),
        recall=recall_at(ours, truth) if truth is not None else (),
        reference_recall=recall_at(theirs, truth) if truth is not None else (),
        near_ties=float(np.mean(kth - next_score < TIE)),
    )
