"""Prompt templates: data, not code.

A template set is a dict (or a JSON file holding one) with these keys:
  next_item        history (and optional profile) -> next item; fields {history}, {profile}
  sid_to_title     {sid} -> title
  title_to_sid     {title} -> SID (also catalog search)
  history_separator  between the SIDs of the history
Responses are the bare SID or title. Templates use genrec_lite.templates syntax: a bracketed
segment such as "[The user is {profile}. ]" drops out when its field is empty, so one template
serves users with and without a profile.

A next_item template that ends with {history} is a *continuation* template: the answer is written
as the next entry of the history (after the separator). Then one user's sequence is one training
example with a target at every item, instead of one example per target: the same prompts at
inference, several times less compute per epoch. The "-seq" sets are the continuation forms.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Mapping, Sequence

from .templates import Template
from .errors import InvalidArgumentError

ENGLISH = {
    "name": "en",
    "next_item": "[The user is {profile}. ]The user has clicked these items in order: {history}. "
                 "Which item will the user click next?",
    "sid_to_title": "What is the title of item {sid}?",
    "title_to_sid": "Which item has the title \"{title}\"?",
    "history_separator": ", ",
}

# In the style of the original system's prompts.
CHINESE = {
    "name": "zh",
    "next_item": "[该用户为{profile}。]用户已按时间顺序点击了如下商品：{history}，你能预测用户下一个可能点击的商品吗？",
    "sid_to_title": "商品{sid}的标题是什么？",
    "title_to_sid": "哪个商品的标题是\"{title}\"？",
    "history_separator": "，",
}

ENGLISH_SEQ = dict(ENGLISH, name="en-seq",
                   next_item="[The user is {profile}. ]The user has clicked these items in order: {history}")
CHINESE_SEQ = dict(CHINESE, name="zh-seq", next_item="[该用户为{profile}。]用户已按时间顺序点击了如下商品：{history}")

BUILTIN = {"en": ENGLISH, "zh": CHINESE, "en-seq": ENGLISH_SEQ, "zh-seq": CHINESE_SEQ}
_REQUIRED = {"next_item": ("history",), "sid_to_title": ("sid",), "title_to_sid": ("title",)}


@dataclass(frozen=True)
class PromptSet:
    next_item: str
    sid_to_title: str
    title_to_sid: str
    history_separator: str = ", "
    name: str = "custom"

    def __post_init__(self):
        for key, needed in _REQUIRED.items():
            t = Template(getattr(self, key))
            missing = [f for f in needed if f not in t.fields]
            if missing:
                raise InvalidArgumentError(
                    f"prompt template {key!r} = {getattr(self, key)!r} lacks the field "
                    f"{{{missing[0]}}}; expected a template that uses it")

    @classmethod
    def load(cls, spec: "str | Path | Mapping | PromptSet") -> "PromptSet":
        """'en', 'zh', a JSON file path, a dict, or a PromptSet."""
        if isinstance(spec, PromptSet):
            return spec
        if isinstance(spec, Mapping):
            data = dict(spec)
        elif str(spec) in BUILTIN:
            data = dict(BUILTIN[str(spec)])
        else:
            path = Path(spec)
            if not path.is_file():
                raise InvalidArgumentError(
                    f"prompt set {spec!r} is neither one of {sorted(BUILTIN)} nor a JSON file")
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InvalidArgumentError(f"{path}: not a JSON prompt set ({exc})") from exc
            data.setdefault("name", path.stem)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidArgumentError(f"prompt set has unknown keys {unknown}; expected {sorted(known)}")
        missing = sorted(k for k in _REQUIRED if k not in data)
        if missing:
            raise InvalidArgumentError(f"prompt set lacks the keys {missing}")
        return cls(**{k: data[k] for k in known if k in data})

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    # --- rendering ---------------------------------------------------------------------------
    @cached_property
    def _templates(self) -> dict[str, Template]:
        return {k: Template(getattr(self, k), collapse_whitespace=False) for k in _REQUIRED}

    @property
    def continues_history(self) -> bool:
        """Whether the answer continues the history (the template ends with {history})."""
        return self.next_item.endswith("{history}")

    def next_item_prompt(self, history_sids: Sequence[str], profile: str = "") -> str:
        text = self._templates["next_item"].render(
            {"history": self.history_separator.join(history_sids), "profile": profile or ""})
        if self.continues_history and history_sids:
            text += self.history_separator
        return text

    def sid_to_title_prompt(self, sid: str) -> str:
        return self._templates["sid_to_title"].render({"sid": sid})

    def title_to_sid_prompt(self, title: str) -> str:
        return self._templates["title_to_sid"].render({"title": title})


def profile_text(record: Mapping | None, template: str | None = None) -> str:
    """A user's profile as one line: the template if given, else 'field: value' pairs."""
    if not record:
        return ""
    if template:
        return Template(template).render({k: "" if v is None else str(v) for k, v in record.items()})
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in record.items()
                     if k != "user_id" and v not in (None, ""))
