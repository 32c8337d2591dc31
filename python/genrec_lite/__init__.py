"""genrec-lite: generative recommendation with semantic IDs.

Importing this package (and anything the serving side needs) never imports torch; training code
lives in modules that import it themselves.
"""

from __future__ import annotations

from .errors import (ArtifactError, DataError, FormatVersionError, GenrecError,
                     InvalidArgumentError, MissingDependencyError, UnknownItemError)

__version__ = "0.1.0"

__all__ = [
    "__version__", "GenrecError", "InvalidArgumentError", "DataError", "UnknownItemError",
    "ArtifactError", "FormatVersionError", "MissingDependencyError",
]
