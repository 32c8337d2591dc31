"""Serving: load an exported bundle and recommend, torch-free (llama.cpp or onnxruntime)."""

from .bundle import Bundle
from .recommender import Recommendation, Recommender

__all__ = ["Bundle", "Recommendation", "Recommender"]
