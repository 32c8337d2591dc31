"""Semantic IDs: item text -> embeddings -> residual quantiser -> codes.

`SemanticIds`, `SidViews` and `SidEncoder` are numpy-only (serving side); training (`build`, `rqvae`,
`embed`) imports torch / sentence-transformers when called.
"""

from .collisions import sid_report
from .encoder import SidEncoder
from .semantic_ids import FORMAT_VERSION, SemanticIds
from .views import SidViews, fuse, view_beam

__all__ = ["SemanticIds", "SidViews", "SidEncoder", "fuse", "view_beam", "sid_report", "FORMAT_VERSION"]
