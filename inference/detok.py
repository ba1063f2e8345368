"""Incremental detokenisation: turn a stream of token ids into text deltas.

Decoding one token at a time is wrong for two reasons: byte-level BPE splits one character
(an emoji, a Chinese character) over several tokens, and SentencePiece-style tokenizers drop
the leading space of whatever comes first in a decode. So, like vLLM and TGI, we decode a small
window twice: from `prefix_offset` to `read_offset` (text already sent) and from
`prefix_offset` to the end, and send the difference, but only once it no longer ends in the
replacement character U+FFFD that marks a character still missing bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

REPLACEMENT_CHARACTER = "\ufffd"


class IncrementalDetokenizer:
    def __init__(self, tokenizer, context: Sequence[int] = ()):
        """`context`: tokens already shown before this stream (the end of a turn being
        continued); they are decoded with the new ones but never sent again."""
        self._tokenizer = tokenizer
        self._ids: list[int] = list(context)
        self._prefix_offset = 0
        self._read_offset = len(self._ids)

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes, possibly "" while a character is open."""
        self._ids.append(token_id)
        sent, window = self._window()
        if len(window) > len(sent) and not window.endswith(REPLACEMENT_CHARACTER):
            self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
            return window[len(sent):]
        return ""

    def peek(self, token_ids: list[int]) -> list[str]:
        """The text each of these tokens would add if it came next (a token holding part of a
        character adds U+FFFD): the alternatives' texts, in the answer's context."""
        start = self._prefix_offset
        sent = self._decode(self._ids[start : self._read_offset])
        windows = self._tokenizer.batch_decode(  # one call for them all
            [self._ids[start:] + [token_id] for token_id in token_ids], skip_special_tokens=True
        )
        return [window[len(sent):] if len(window) > len(sent) else "" for window in windows]

    def flush(self) -> str:
        """The text still held back, at the end of generation (may end in U+FFFD if cut short)."""
        sent, window = self._window()
        self._prefix_offset = self._read_offset = len(self._ids)
        return window[len(sent):] if len(window) > len(sent) else ""

    def _window(self) -> tuple[str, str]:
        start = self._prefix_offset
        sent = self._decode(self._ids[start : self._read_offset])
        return sent, self._decode(self._ids[start:])

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True) if ids else ""
