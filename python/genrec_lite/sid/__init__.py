"""Semantic IDs: item text -> embeddings -> residual quantiser -> codes.

`SemanticIds` and `SidEncoder` are numpy-only (serving side); training (`build`, `rqvae`,
`embed`) imports torch / sentence-transformers when called.
"""

from .collisions import sid_report
from .encoder import SidEncoder
from .semantic_ids import FORMAT_VERSION, SemanticIds

__all__ = ["SemanticIds", "SidEncoder", "sid_report", "FORMAT_VERSION"]
