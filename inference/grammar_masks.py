"""The engine's side of constrained decoding: each constrained row's allowed tokens per step.

See docs/ARCHITECTURE.md, "Engine" (Structured output). The engine keeps one `GrammarMatcher`
per constrained row and, at each step, computes every constrained row's allowed-token bitmask
in one parallel llguidance call (`GrammarTokenizer.masks`), then feeds each row's chosen token
back (`GrammarMatcher.consume`). Near its token limit a row is steered out of its JSON, so an
answer cut by max_tokens still parses; a row that was steered (a step where closing left out
tokens the grammar allowed) was cut by the limit, and ends "length", not "stop".
"""

from __future__ import annotations

import llguidance
import llguidance.hf
import llguidance.torch
import torch
from llguidance import LLMatcher, LLTokenizer

from inference.errors import InferenceError
from inference.grammar import sentence

# How many tokens before its limit a constrained row starts closing its JSON (at most half).
CLOSING_RESERVE = 24


class GrammarTokenizer:
    """llguidance's view of the model's vocabulary: each token's bytes, and the end tokens a
    finished grammar allows. Building it reads the whole vocabulary (about a second for a real
    one), so the engine makes it once, on first use."""

    def __init__(self, tokenizer, vocab_size: int, stop_token_ids: frozenset[int]):
        eos = sorted(stop_token_ids) or None
        try:
            self.ll = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=eos)
        except ValueError:
            # llguidance reads byte-level BPE and SentencePiece vocabularies itself; others (the
            # demo model's word-level one) are described token by token.
            self.ll = LLTokenizer(_TokenList(tokenizer, vocab_size), eos_token=eos)
        self.vocab_size = vocab_size
        self._executor = llguidance.LLExecutor()
        self._bits = torch.arange(32, dtype=torch.int32)
        pieces = [self.ll.decode_bytes([i]) for i in range(vocab_size)]
        self._closers = {
            closer: torch.tensor([piece == closer for piece in pieces], dtype=torch.bool)
            for closer in (b'"', b"}", b"]", b",")
        }

    def matcher(self, grammar: str) -> GrammarMatcher:
        matcher = LLMatcher(self.ll, grammar, log_level=0)
        if matcher.is_error():
            problem = sentence(matcher.get_error())
            raise InferenceError("invalid_schema", f"The grammar cannot be used: {problem}")
        return GrammarMatcher(matcher, self.ll)

    def masks(self, matchers: list[GrammarMatcher], closing: list[bool]):
        """The allowed tokens of each matcher's next step, as a [rows, vocab] bool tensor.
        Rows marked `closing` are near their token limit, and are steered out of their JSON
        so that it ends complete instead of being cut (`_closing_choice`)."""
        bitmask = llguidance.torch.allocate_token_bitmask(len(matchers), self.vocab_size)
        llguidance.torch.fill_next_token_bitmask_par(
            self._executor, [(m.ll, row) for row, m in enumerate(matchers)], bitmask
        )
        allowed = (bitmask.unsqueeze(-1) >> self._bits) & 1
        allowed = allowed.reshape(len(matchers), -1)[:, : self.vocab_size].bool()
        for row, near_end in enumerate(closing):
            if near_end:
                choice = self._closing_choice(allowed[row], matchers[row].in_string)
                if not torch.equal(choice, allowed[row]):
                    matchers[row].steered = True
                allowed[row] = choice
        return allowed

    def _closing_choice(self, allowed, in_string: bool):
        """The shortest way out of a JSON state: inside a string, its closing quote; outside,
        a closing brace or bracket, else a quote (a required key, or a string value, begins;
        it is closed at the next step), else a comma (it ends a number, and the next required
        key is forced); when the grammar allows none of them (a value's first character, a
        minimum of items), whatever it allows."""
        order = [[b'"']] if in_string else [[b"}", b"]"], [b'"'], [b","]]
        for closers in order:
            choice = allowed & torch.stack([self._closers[c] for c in closers]).any(dim=0)
            if choice.any():
                return choice
        return allowed


class GrammarMatcher:
    """One row's place in its grammar, and whether the JSON so far is inside a string (the
    only lexical state closing needs: a quote there ends the string, elsewhere starts one)."""

    def __init__(self, matcher: LLMatcher, tokenizer: LLTokenizer):
        self.ll = matcher
        self._tokenizer = tokenizer
        self.in_string = False
        self._escaped = False
        self.steered = False  # the token limit narrowed a step's choice (`masks`)

    @property
    def complete(self) -> bool:
        """The grammar is finished: only an end token could follow."""
        return self.ll.is_stopped()

    def consume(self, token_id: int) -> None:
        if not self.ll.consume_token(token_id):
            # Only allowed tokens are sampled, so this is a bug, not the model's doing.
            raise RuntimeError(f"the grammar refused token {token_id}: {self.ll.get_error()}")
        for byte in self._tokenizer.decode_bytes([token_id]):
            if self._escaped:
                self._escaped = False
            elif self.in_string and byte == 0x5C:  # a backslash escapes the next character
                self._escaped = True
            elif byte == 0x22:  # a quote
                self.in_string = not self.in_string


class _TokenList:
    """llguidance's TokenizerWrapper protocol for a vocabulary it cannot read: every token's
    text as bytes ("▁" is the space Metaspace decoders write), special tokens as empty."""

    def __init__(self, tokenizer, vocab_size: int):
        special = set(tokenizer.all_special_ids)
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.tokens = [
            b"" if i in special or i >= len(pieces) else pieces[i].replace("\u2581", " ").encode()
            for i in range(vocab_size)
        ]
        self.special_token_ids = sorted(special)
        self.eos_token_id = tokenizer.eos_token_id
        self.bos_token_id = tokenizer.bos_token_id
        self.is_tokenizer_wrapper = True
        self._ids = {token: i for i, token in reversed(list(enumerate(self.tokens))) if token}
        self._longest = max(map(len, self._ids))

    def __call__(self, text: str | bytes) -> list[int]:
        """Longest match first, over these bytes. llguidance tokenizes the text a grammar
        forces with this, so it must spell exactly that text (the model's own tokenizer would
        lowercase it and add a leading space)."""
        data = text.encode() if isinstance(text, str) else text
        ids, start = [], 0
        while start < len(data):
            for end in range(min(len(data), start + self._longest), start, -1):
                if data[start:end] in self._ids:
                    ids.append(self._ids[data[start:end]])
                    start = end
                    break
            else:
                raise ValueError(f"no token spells {data[start:start + 1]!r}")
        return ids


