"""Evaluation: ranking metrics (HR@K, NDCG@K) and the helpers that make ranked lists.

numpy only (no torch), so the same code scores a PyTorch model, an exported bundle and the
classical baselines in ``benchmarks/baselines``.
"""

from __future__ import annotations

from .metrics import (DEFAULT_KS, metric_names, metrics_table, rank_metrics, segment_metrics,
                      target_ranks, top_k_from_scores)

__all__ = ["DEFAULT_KS", "metric_names", "metrics_table", "rank_metrics", "segment_metrics",
           "target_ranks", "top_k_from_scores"]
