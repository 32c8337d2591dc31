"""One exception family for the whole library.

Every error names the bad value and what was expected. Errors raised by the C++ core arrive in
Python as these classes (the bindings translate them).
"""

from __future__ import annotations


class GenrecError(Exception):
    """Base class of every error genrec-lite raises on purpose."""


class InvalidArgumentError(GenrecError, ValueError):
    """An argument has the wrong value, shape, type or range."""


class DataError(GenrecError, ValueError):
    """Input data is malformed: names the file, the line (1-based) and the offending value."""

    def __init__(self, message: str, *, path: object = None, line: int | None = None,
                 value: object = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f":{line}"
            where += ": "
        super().__init__(where + message)
        self.path = None if path is None else str(path)
        self.line = line
        self.value = value


class UnknownItemError(DataError, KeyError):
    """An item id that the catalog does not contain."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return Exception.__str__(self)


class ModelOutputError(GenrecError):
    """The model's logits hold a NaN or +inf where a search reads them (a broken model output that
    must not pass for an empty or a wrong answer). Names the request (its index in the batch), the
    SID level, the token, the token's SID code when it is one the trie allowed there (else None)
    and the value. The C++ search and the reference decoder raise it with the same message."""

    def __init__(self, message: str, *, request: int, level: int, token: int, code: int | None,
                 value: float):
        super().__init__(message)
        self.request, self.level, self.token, self.code, self.value = request, level, token, code, value

    @classmethod
    def at(cls, request: int, level: int, token: int, code: int | None, value: float
           ) -> "ModelOutputError":
        """The error with the C++ core's message (genrec/errors.h)."""
        where = f" (SID code {code}, allowed)" if code is not None else " (in the row of a beam that continues)"
        shown = "nan" if value != value else "inf"
        return cls(f"request {request}, SID level {level}: the model's logit of token {token}{where} is "
                   f"{shown}; expected a finite value or -inf (the model's output is broken)",
                   request=request, level=level, token=token, code=code, value=value)


class ArtifactError(GenrecError):
    """A saved artefact (SID table, checkpoint, bundle) is missing, truncated or corrupted."""


class FormatVersionError(ArtifactError):
    """An artefact was written in a format version this release cannot read."""


class ResumeMismatchError(GenrecError):
    """A job asked to resume in a folder that holds the partial output of another job (other
    inputs or settings); it names what differs and is refused rather than mixing the two."""


class ClosedError(GenrecError):
    """The object was closed (a Recommender after close()); it serves no more calls."""


class ForkError(GenrecError, RuntimeError):
    """A model was used in a process forked after the model had run multi-threaded work in its
    parent: the worker threads do not survive a fork, so the call would hang."""


class MissingDependencyError(GenrecError, ImportError):
    """An optional dependency (usually the [train] extra) is not installed."""


class ExtensionNotBuiltError(MissingDependencyError):
    """The compiled C++ core (genrec_lite._core) cannot be imported: not built, or built for
    another Python. Raised by genrec_lite._ext, the one module that imports it."""


def require(module: str, extra: str = "train"):
    """Import an optional dependency or say which extra brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"'{module}' is needed for this step but is not installed; "
            f"install it with: pip install 'genrec-lite[{extra}]'") from exc
