"""cn_clip's BERT tokenizer without torch: the same token ids as `cn_clip.clip.tokenize`.

Importing `cn_clip.clip` imports torch (2 s or more), which a text query on the
OpenVINO path does not otherwise need. This is a port of cn_clip's
`clip/bert_tokenizer.py` and `clip/utils.py: tokenize`; the tokenizer there is
Google BERT's `tokenization.py`:

    Copyright 2018 The Google AI Language Team Authors.
    Licensed under the Apache License, Version 2.0 (the "License");
    you may not use this file except in compliance with the License.
    You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
    Unless required by applicable law or agreed to in writing, software
    distributed under the License is distributed on an "AS IS" BASIS,
    WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.

The rules are unchanged; only the loops are rearranged for speed (a per-character
translation table, a cache of per-word ids, and a bound on wordpiece lengths).
"""

from __future__ import annotations

import functools
import importlib.util
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from searchcore.errors import ModelError

CONTEXT_LENGTH = 52
MAX_CHARS_PER_WORD = 200
UNK, CLS, SEP = "[UNK]", "[CLS]", "[SEP]"


def vocab_path() -> Path:
    """The vocab.txt shipped in the cn_clip package, found without importing cn_clip."""
    # find_spec on a top-level package only locates it; it does not run its __init__.
    spec = importlib.util.find_spec("cn_clip")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "clip" / "vocab.txt"
        if path.is_file():
            return path
    raise ModelError("vocab_missing")


@functools.lru_cache(maxsize=1)
def load_vocab() -> dict[str, int]:
    """Token → id, read the way cn_clip reads it (a later duplicate line wins)."""
    vocab: dict[str, int] = {}
    # Iterating a text file splits lines exactly as cn_clip's readline() loop does.
    with open(vocab_path(), encoding="utf-8") as reader:
        for index, line in enumerate(reader):
            vocab[line.strip()] = index
    return vocab


def _is_whitespace(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    # \t, \n and \r count as whitespace, not control characters.
    return char not in "\t\n\r" and unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char: str) -> bool:
    cp = ord(char)
    # All non-letter/number ASCII counts as punctuation, "^", "$" and "`" included.
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_chinese_char(cp: int) -> bool:
    # The CJK Unified Ideographs blocks; Hangul, Hiragana and Katakana are not among them.
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


class _CleanTable(dict[int, str]):
    """str.translate table doing BERT's _clean_text and _tokenize_chinese_chars in one pass."""

    def __missing__(self, cp: int) -> str:
        char = chr(cp)
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            out = ""
        elif _is_whitespace(char):
            out = " "
        elif _is_chinese_char(cp):
            out = f" {char} "
        else:
            out = char
        self[cp] = out
        return out


_CLEAN = _CleanTable()


def _strip_accents(text: str) -> str:
    return "".join(char for char in unicodedata.normalize("NFD", text) if unicodedata.category(char) != "Mn")


def _split_on_punctuation(text: str) -> list[str]:
    output: list[list[str]] = []
    start_new_word = True
    for char in text:
        if _is_punctuation(char):
            output.append([char])
            start_new_word = True
        else:
            if start_new_word:
                output.append([])
            start_new_word = False
            output[-1].append(char)
    return ["".join(x) for x in output]


@functools.lru_cache(maxsize=1)
def _longest_token() -> int:
    return max(map(len, load_vocab()))


def _wordpiece(token: str, vocab: dict[str, int]) -> list[int]:
    """Greedy longest-match-first wordpieces of one word, or [UNK] if any part has no match."""
    if len(token) > MAX_CHARS_PER_WORD:
        return [vocab[UNK]]
    longest = _longest_token()
    ids: list[int] = []
    start = 0
    while start < len(token):
        # A piece longer than the longest vocab entry cannot match, so skip trying it.
        end = min(len(token), start + longest)
        while start < end:
            piece = token[start:end] if start == 0 else "##" + token[start:end]
            found = vocab.get(piece)
            if found is not None:
                ids.append(found)
                break
            end -= 1
        else:
            return [vocab[UNK]]
        start = end
    return ids


@functools.lru_cache(maxsize=65536)
def _word_ids(word: str) -> tuple[int, ...]:
    """Ids of one whitespace-separated word: lowercase, strip accents, split punctuation, wordpiece."""
    vocab = load_vocab()
    ids: list[int] = []
    for part in _split_on_punctuation(_strip_accents(word.lower())):
        # cn_clip joins the parts with spaces and splits again, then wordpiece splits again.
        for token in part.split():
            ids.extend(_wordpiece(token, vocab))
    return tuple(ids)


def _text_ids(text: str | bytes) -> list[int]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "ignore")
    elif not isinstance(text, str):
        raise ValueError(f"Unsupported string type: {type(text)}")
    ids: list[int] = []
    for word in text.translate(_CLEAN).split():
        ids.extend(_word_ids(word))
    return ids


def tokenize(texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH) -> np.ndarray:
    """Token ids [n, context_length] (int64) equal to cn_clip's tokenize; longer text is truncated."""
    if context_length < 2:
        raise ValueError(f"context_length must be at least 2 for [CLS] and [SEP], got {context_length}")
    if isinstance(texts, str):
        texts = [texts]
    vocab = load_vocab()
    cls, sep = vocab[CLS], vocab[SEP]
    result = np.zeros((len(texts), context_length), dtype=np.int64)
    for row, text in enumerate(texts):
        tokens = [cls, *_text_ids(text)[: context_length - 2], sep]
        result[row, : len(tokens)] = tokens
    return result
