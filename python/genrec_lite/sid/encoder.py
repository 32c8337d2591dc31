"""The trained item quantiser in plain numpy: embedding -> (MLP encoder) -> residual codes.

This is what gives a new item its SID without torch: the RQ-VAE encoder's weights run as a numpy
MLP and the residual nearest-codeword search runs in the C++ core. RQ-KMeans has no MLP (identity).
"""

from __future__ import annotations

import numpy as np

from .._ext import core
from ..errors import InvalidArgumentError

# Rows encoded per step: bounds the MLP's activations (512 floats a row in the widest layer) and
# the float32 copy of the input, whatever the number of items.
ENCODE_BATCH = 65_536


def all_finite(vectors: np.ndarray, chunk: int = ENCODE_BATCH) -> bool:
    """np.isfinite(vectors).all() without an (n, d) bool temporary."""
    return all(np.isfinite(vectors[i:i + chunk]).all() for i in range(0, len(vectors), chunk))


class SidEncoder:
    """Maps item embeddings (n, input_dim) to base codes (n, levels).

    `layers` is a list of (weight (out, in), bias (out,)) pairs applied with ReLU between them and
    none after the last, i.e. the RQ-VAE encoder; an empty list means the codebooks quantise the
    embeddings directly (RQ-KMeans).
    """

    def __init__(self, codebooks: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]] | None = None,
                 input_dim: int | None = None):
        codebooks = np.ascontiguousarray(codebooks, dtype=np.float32)
        if codebooks.ndim != 3:
            raise InvalidArgumentError(
                f"codebooks must have shape (levels, codebook_size, dim); got {codebooks.shape}")
        self.codebooks = codebooks
        self.layers = [(np.ascontiguousarray(w, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32))
                       for w, b in (layers or [])]
        latent = codebooks.shape[2]
        if self.layers:
            if self.layers[-1][0].shape[0] != latent:
                raise InvalidArgumentError(
                    f"encoder output dim {self.layers[-1][0].shape[0]} != codebook dim {latent}")
            self.input_dim = int(self.layers[0][0].shape[1])
        else:
            self.input_dim = int(latent)
        if input_dim is not None and int(input_dim) != self.input_dim:
            raise InvalidArgumentError(f"input_dim {input_dim} != encoder input dim {self.input_dim}")
        self._quantizer = None

    @property
    def levels(self) -> int:
        return int(self.codebooks.shape[0])

    @property
    def codebook_size(self) -> int:
        return int(self.codebooks.shape[1])

    @property
    def latent_dim(self) -> int:
        return int(self.codebooks.shape[2])

    def latent(self, vectors: np.ndarray) -> np.ndarray:
        """The encoder MLP, in float32 numpy."""
        return self._forward(self.check_vectors(vectors))

    def _forward(self, x: np.ndarray) -> np.ndarray:
        for i, (w, b) in enumerate(self.layers):
            x = x @ w.T + b
            if i + 1 < len(self.layers):
                np.maximum(x, 0.0, out=x)
        return np.ascontiguousarray(x, dtype=np.float32)

    def encode(self, vectors: np.ndarray, n_threads: int = 1) -> np.ndarray:
        """Base codes (n, levels) int32 by the greedy residual nearest-codeword rule (C++ core),
        ENCODE_BATCH rows at a time (each row's codes depend on that row alone)."""
        if self._quantizer is None:
            self._quantizer = core().ResidualQuantizer(self.codebooks)
        x = np.asarray(vectors)
        if x.ndim != 2 or len(x) <= ENCODE_BATCH:
            return self._quantizer.encode(self.latent(x), n_threads=n_threads)
        if x.shape[1] != self.input_dim:
            self.check_vectors(x)  # raises, naming the whole input's shape
        out = np.empty((len(x), self.levels), dtype=np.int32)
        for start in range(0, len(x), ENCODE_BATCH):
            batch = self.check_vectors(x[start:start + ENCODE_BATCH], first_row=start)
            out[start:start + ENCODE_BATCH] = self._quantizer.encode(self._forward(batch),
                                                                     n_threads=n_threads)
        return out

    def check_vectors(self, vectors: np.ndarray, first_row: int = 0) -> np.ndarray:
        """Vectors as C-contiguous float32 (n, input_dim); InvalidArgumentError for a wrong shape
        or a non-finite value, naming the row (counted from `first_row`: a batch's place in the
        whole input)."""
        x = np.asarray(vectors)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise InvalidArgumentError(
                f"item vectors must have shape (n, {self.input_dim}); got {np.shape(vectors)}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            raise InvalidArgumentError(
                f"item vector at row {first_row + int(np.flatnonzero(bad)[0])} has NaN or inf values; "
                "expected finite numbers")
        return x

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to store (see from_state)."""
        out = {"codebooks": self.codebooks}
        for i, (w, b) in enumerate(self.layers):
            out[f"encoder.{i}.weight"] = w
            out[f"encoder.{i}.bias"] = b
        return out

    @classmethod
    def from_state(cls, arrays) -> "SidEncoder":
        layers = []
        i = 0
        while f"encoder.{i}.weight" in arrays:
            layers.append((arrays[f"encoder.{i}.weight"], arrays[f"encoder.{i}.bias"]))
            i += 1
        return cls(arrays["codebooks"], layers)

