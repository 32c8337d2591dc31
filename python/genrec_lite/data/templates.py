"""Text templates: this import path is kept for callers; the code lives in genrec_lite.templates,
outside the data package, so that serving (genrec_lite.runtime) uses templates without importing
the data layer."""

from ..templates import Template, as_template

__all__ = ["Template", "as_template"]
