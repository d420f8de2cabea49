"""Instruction tokenizer: the real one from a local model directory, or a byte-level one built in code.

The default needs no download: a byte-level BPE with no merges (every UTF-8 byte is a
token) built with the ``tokenizers`` library, plus a padding token. It is fixed by
construction, independent of the data, and saved beside every checkpoint
(``tokenizer.json``) like a real one, so inference loads whichever a model was trained with.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

TOKENIZER_FILE = "tokenizer.json"
PAD = "<|pad|>"


def byte_level_tokenizer() -> Tokenizer:
    """256 byte tokens (ids 0-255 in byte-level alphabet order) and ``<|pad|>`` (id 256)."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: i for i, symbol in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([PAD])
    return tok


def load_tokenizer(directory: str | Path | None) -> Tokenizer:
    """``directory/tokenizer.json`` when given, else the built-in byte-level tokenizer."""
    if directory is None:
        return byte_level_tokenizer()
    path = Path(directory) / TOKENIZER_FILE if Path(directory).is_dir() else Path(directory)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no tokenizer.json (model.weights.tokenizer)")
    return Tokenizer.from_file(str(path))


def pad_id(tok: Tokenizer) -> int:
    for candidate in (PAD, "<|endoftext|>", "<pad>", "[PAD]"):
        token_id = tok.token_to_id(candidate)
        if token_id is not None:
            return token_id
    return 0


def encode_batch(tok: Tokenizer, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids [B, T], valid [B, T]) right-padded to the longest text, each cut at ``max_tokens``."""
    encoded = [e.ids[:max_tokens] for e in tok.encode_batch(texts, add_special_tokens=False)]
    length = max(1, max((len(e) for e in encoded), default=1))
    ids = torch.full((len(texts), length), pad_id(tok), dtype=torch.long)
    valid = torch.zeros((len(texts), length), dtype=torch.bool)
    for i, e in enumerate(encoded):
        ids[i, : len(e)] = torch.tensor(e, dtype=torch.long)
        valid[i, : len(e)] = True
    return ids, valid
