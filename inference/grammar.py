"""Constrained decoding: a row may carry a grammar, and only tokens it allows are sampled.

See docs/ARCHITECTURE.md, "Engine" (Structured output) and "Library choices" (llguidance). A
request names its grammar as llguidance's serialised grammar text (`SamplingParams.grammar`),
made here from a JSON schema (`json_schema_grammar`) or for any JSON object
(`json_object_grammar`); callers check it compiles before they accept the request
(`grammar_error`). The engine keeps one `GrammarMatcher` per constrained row and, at each step,
computes every constrained row's allowed-token bitmask in one parallel call (`masks`), then
feeds each row's chosen token back (`consume`).
"""

from __future__ import annotations

import json

import llguidance
from llguidance import LLMatcher, LLTokenizer

from inference.errors import InferenceError

# Compact JSON: no free whitespace, which a model could otherwise emit forever.
JSON_OPTIONS = {"whitespace_flexible": False}


def json_schema_grammar(schema: dict) -> str:
    """The grammar for JSON that validates against `schema`; InferenceError("invalid_schema")
    naming the problem when llguidance cannot compile it."""
    try:
        grammar = LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults=JSON_OPTIONS)
    except (ValueError, TypeError) as error:
        raise InferenceError("invalid_schema", f"The JSON schema is not usable: {_sentence(error)}") from None
    problem = grammar_error(grammar)
    if problem:
        raise InferenceError("invalid_schema", f"The JSON schema cannot be enforced: {_sentence(problem)}")
    return grammar


def json_object_grammar() -> str:
    """Any JSON object (OpenAI's `json_object` mode)."""
    return json_schema_grammar({"type": "object"})


def grammar_error(grammar: str) -> str:
    """"" when llguidance can compile the grammar, else its message (first line)."""
    message = LLMatcher.validate_grammar(grammar)
    return message.strip().splitlines()[0] if message.strip() else ""


def _sentence(problem) -> str:
    text = str(problem).strip()
    return text if text.endswith(".") else text + "."


class GrammarTokenizer:
    """llguidance's view of the model's vocabulary: each token's bytes, and the end tokens a
    finished grammar allows. Building it reads the whole vocabulary (about a second for a real
    one), so the engine makes it once, on first use."""

    def __init__(self, tokenizer, vocab_size: int, stop_token_ids: frozenset[int]):
        # Imported here: the web tier checks schemas with this module without loading torch.
        import llguidance.hf
        import torch

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

    def matcher(self, grammar: str) -> GrammarMatcher:
        matcher = LLMatcher(self.ll, grammar, log_level=0)
        if matcher.is_error():
            raise InferenceError("invalid_schema", f"The grammar cannot be used: {_sentence(matcher.get_error())}")
        return GrammarMatcher(matcher)

    def masks(self, matchers: list[GrammarMatcher]):
        """The allowed tokens of each matcher's next step, as a [rows, vocab] bool tensor."""
        import llguidance.torch

        bitmask = llguidance.torch.allocate_token_bitmask(len(matchers), self.vocab_size)
        llguidance.torch.fill_next_token_bitmask_par(
            self._executor, [(m.ll, row) for row, m in enumerate(matchers)], bitmask
        )
        allowed = (bitmask.unsqueeze(-1) >> self._bits) & 1
        return allowed.reshape(len(matchers), -1)[:, : self.vocab_size].bool()


class GrammarMatcher:
    """One row's place in its grammar."""

    def __init__(self, matcher: LLMatcher):
        self.ll = matcher

    @property
    def complete(self) -> bool:
        """The grammar is finished: only an end token could follow."""
        return self.ll.is_stopped()

    def consume(self, token_id: int) -> None:
        if not self.ll.consume_token(token_id):
            # Only allowed tokens are sampled, so this is a bug, not the model's doing.
            raise RuntimeError(f"the grammar refused token {token_id}: {self.ll.get_error()}")


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


