"""Tokenizers: a small byte-level BPE learnt from the catalog (compact backbone), or a pretrained
model's tokenizer; either way every SID token is added as one token.

Byte-level BPE with the GPT-2 pre-tokenisation rule is the choice because llama.cpp implements the
same rule, so an exported GGUF tokenises prompts exactly as this tokenizer does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from ..errors import require

EOS = "<|endoftext|>"
PAD = "<|pad|>"


def train_bpe_tokenizer(texts: Iterable[str], sid_tokens: Sequence[str], *, vocab_size: int = 4096,
                        min_frequency: int = 2):
    """Learn a byte-level BPE from `texts`; SID tokens are added whole. Returns a HF fast tokenizer."""
    tk = require("tokenizers")
    transformers = require("transformers")
    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOS, PAD],
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([tk.AddedToken(t, normalized=False, single_word=False) for t in sid_tokens])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD,
                                                clean_up_tokenization_spaces=False)


def add_sid_tokens(tokenizer, sid_tokens: Sequence[str]) -> int:
    """Add SID tokens (whole, never split) to a pretrained tokenizer; gives it a pad token if it
    has none. Returns how many tokens were new."""
    tk = require("tokenizers")
    new = tokenizer.add_tokens([tk.AddedToken(t, normalized=False) for t in sid_tokens])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return new


def sid_token_ids(tokenizer, sid_tokens: Sequence[str]) -> list[int]:
    ids = tokenizer.convert_tokens_to_ids(list(sid_tokens))
    bad = [t for t, i in zip(sid_tokens, ids) if i is None or i == tokenizer.unk_token_id]
    if bad:
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError(f"tokenizer lacks SID tokens such as {bad[0]!r}; expected all "
                                   "SID tokens added")
    return list(ids)


def load_tokenizer(path: str | Path):
    transformers = require("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(path))
