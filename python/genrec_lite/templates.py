"""Text templates that turn a record (an item, a user profile) into one line of text.

Syntax: Python ``str.format`` fields plus *optional segments*.

- ``{title}`` is replaced by the record's ``title`` field (always text; a field the record lacks,
  or that is empty, renders as ""). A format spec works as in ``str.format``: ``{title:.40}``
  keeps the first 40 characters. Only plain field names are allowed (no ``{0}``, ``{a.b}``).
- ``[ ... ]`` is an optional segment: it is dropped when every field inside it is empty, e.g.
  ``"{title}.[ Brand: {brand}.]"`` gives ``"Drill. Brand: Acme."`` or just ``"Drill."``.
  A segment with no field is always kept. Segments do not nest.
- ``{{``, ``}}``, ``[[`` and ``]]`` write a literal ``{``, ``}``, ``[`` and ``]``.
- After rendering, runs of whitespace become one space and the ends are stripped (pass
  ``collapse_whitespace=False`` to keep the text as rendered).

Templates are data, not code, so they may be in any language.
"""

from __future__ import annotations

import string
from typing import Iterable, Mapping

from .errors import InvalidArgumentError

_FORMATTER = string.Formatter()


class Template:
    """A parsed template; :meth:`render` fills it from one record."""

    def __init__(self, text: str, *, collapse_whitespace: bool = True):
        if not isinstance(text, str):
            raise InvalidArgumentError(f"a template must be a str, got {type(text).__name__}")
        self.text = text
        self.collapse_whitespace = collapse_whitespace
        # each segment: (optional, [(literal, field or None, spec, conversion), ...], field names)
        self._segments: list[tuple[bool, list[tuple[str, str | None, str, str | None]],
                                   tuple[str, ...]]] = []
        names: list[str] = []
        for optional, chunk in _split_segments(text):
            try:
                parts = list(_FORMATTER.parse(chunk))
            except ValueError as exc:
                raise InvalidArgumentError(f"bad template {text!r}: {exc}") from None
            pieces = []
            seg_fields = []
            for literal, name, spec, conv in parts:
                if name is not None:
                    if not name or name.isdigit() or any(c in name for c in ".[]"):
                        raise InvalidArgumentError(
                            f"bad template {text!r}: field {{{name}}} is not a plain field "
                            "name (write e.g. {title})")
                    if spec and ("{" in spec):
                        raise InvalidArgumentError(
                            f"bad template {text!r}: nested fields in a format spec are not "
                            "supported")
                    seg_fields.append(name)
                    if name not in names:
                        names.append(name)
                pieces.append((literal, name, spec or "", conv))
            self._segments.append((optional, pieces, tuple(seg_fields)))
        self.fields: tuple[str, ...] = tuple(names)

    def check_fields(self, available: Iterable[str], what: str = "the data") -> None:
        """Raise InvalidArgumentError if the template names a field ``available`` lacks."""
        have = list(available)
        missing = [f for f in self.fields if f not in have]
        if missing:
            raise InvalidArgumentError(
                f"template {self.text!r} uses field{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(m) for m in missing)}, which {what} does not have "
                f"(fields: {', '.join(repr(h) for h in have) or 'none'})")

    def render(self, values: Mapping[str, str]) -> str:
        """Fill the template; ``values`` maps field name to text (missing means "")."""
        out = []
        for optional, pieces, seg_fields in self._segments:
            if optional and seg_fields and not any(values.get(f) for f in seg_fields):
                continue
            for literal, name, spec, conv in pieces:
                out.append(literal)
                if name is not None:
                    value = values.get(name) or ""
                    if conv:
                        value = _FORMATTER.convert_field(value, conv)
                    out.append(format(value, spec) if spec else value)
        text = "".join(out)
        if self.collapse_whitespace:
            text = " ".join(text.split())
        return text

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def as_template(template: "str | Template") -> Template:
    return template if isinstance(template, Template) else Template(template)


def _split_segments(text: str) -> list[tuple[bool, str]]:
    """Split on unescaped ``[`` / ``]`` outside ``{...}``; ``[[``/``]]`` become literal."""
    segments: list[tuple[bool, str]] = []
    buf: list[str] = []
    optional = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "{":
            if text.startswith("{{", i):
                buf.append("{{")
                i += 2
                continue
            end = text.find("}", i)
            if end < 0:
                raise InvalidArgumentError(f"bad template {text!r}: '{{' at {i} is never closed")
            buf.append(text[i:end + 1])
            i = end + 1
            continue
        if c in "[]":
            if text.startswith(c * 2, i):
                buf.append(c)
                i += 2
                continue
            if c == "[":
                if optional:
                    raise InvalidArgumentError(
                        f"bad template {text!r}: optional segments '[...]' do not nest "
                        f"(second '[' at {i}; write '[[' for a literal '[')")
                segments.append((False, "".join(buf)))
                buf, optional = [], True
            else:
                if not optional:
                    raise InvalidArgumentError(
                        f"bad template {text!r}: ']' at {i} closes no '[' "
                        "(write ']]' for a literal ']')")
                segments.append((True, "".join(buf)))
                buf, optional = [], False
            i += 1
            continue
        buf.append(c)
        i += 1
    if optional:
        raise InvalidArgumentError(f"bad template {text!r}: an optional segment '[' is never "
                                   "closed with ']'")
    segments.append((False, "".join(buf)))
    return [(opt, chunk) for opt, chunk in segments if chunk or opt]
