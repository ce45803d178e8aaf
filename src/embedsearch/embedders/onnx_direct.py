"""A shorter road through a Sentence Transformers ONNX model, checked against the long one.

sentence-transformers' own call path wraps a ~1.1 ms ONNX Runtime run of a 21-token query in
~0.6 ms of Python: generic multimodal preprocessing, the tokenizer's Python layer, and torch
tensors converted in and out of Optimum's session wrapper. This path calls the very objects
sentence-transformers loaded, directly:

- the model's own tokenizer (its Rust backend, as sentence-transformers configured it,
  truncating at the model's max_seq_length);
- the ONNX Runtime session Optimum opened;
- sentence-transformers' own modules after the transformer (Pooling, Dense, Normalize): traced
  into the int8 graph at export (onnx_cache.append_sentence_output), or else run with torch.

Nothing is re-implemented. It is used only where it gives sentence-transformers' vectors: a
model it cannot map, or one whose probe texts embed differently (see `agrees_with`), keeps
sentence-transformers' path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from embedsearch.embedders.base import Vectors, normalize_rows
from embedsearch.embedders.onnx_cache import SENTENCE_OUTPUT, TOKEN_OUTPUT

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Same-input runs give the same int8 activations and scales, so the two paths agree to float
# rounding; anything beyond this is a real difference (tokenization, truncation, pooling).
_TOLERANCE = 1e-5


class DirectOnnx:
    """One model call: tokenize, run the session, pool; for LocalEmbedder's worker thread.

    Built from a loaded Sentence Transformers model (`attach`, `for_model`) or, by the light
    runtime, from files alone: the session, the tokenizer as configured for the model
    (`tokenizer_json`), and the model's window."""

    def __init__(
        self,
        session: Any,
        tokenizer_json: str,
        max_tokens: int,
        *,
        unit_output: bool,
        modules: Sequence[Any] = (),
    ) -> None:
        from tokenizers import Tokenizer

        self._session = session
        self._inputs = [i.name for i in session.get_inputs()]
        self.pools_in_graph = SENTENCE_OUTPUT in {o.name for o in session.get_outputs()}
        if not self.pools_in_graph and not modules:
            raise ValueError(f"the graph has no {SENTENCE_OUTPUT} output and no modules pool it")
        self._modules = list(modules)
        self._unit_output = unit_output
        self.max_tokens = max_tokens
        # The tokenizer with the model's truncation and padding built in (see for_model); the
        # counter is a copy without them. Settings stay fixed: no call reconfigures a shared one.
        self.tokenizer_json = tokenizer_json
        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        self._counter = Tokenizer.from_str(tokenizer_json)
        self._counter.no_truncation()
        self._counter.no_padding()

    @classmethod
    def for_model(cls, model: Any, session: Any, tokenizer: Any) -> DirectOnnx:
        """The direct path for `model` (a SentenceTransformer) through `session`, tokenizing as
        its fast `tokenizer` does: truncation at max_seq_length, its padding token and side."""
        from tokenizers import Tokenizer

        max_tokens = int(model.max_seq_length)
        rust = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        rust.enable_truncation(
            max_tokens, strategy="longest_first", direction=tokenizer.truncation_side
        )
        rust.enable_padding(
            direction=tokenizer.padding_side,
            pad_id=tokenizer.pad_token_id,
            pad_type_id=tokenizer.pad_token_type_id,
            pad_token=tokenizer.pad_token,
        )
        modules = list(model)[1:]
        # A final Normalize module gives unit vectors already: no second pass (~0.04 ms cold).
        unit_output = bool(modules) and type(modules[-1]).__name__ == "Normalize"
        return cls(session, rust.to_str(), max_tokens, unit_output=unit_output, modules=modules)

    @classmethod
    def attach(cls, model: Any) -> DirectOnnx | None:
        """The direct path for a loaded ONNX SentenceTransformer, or None where its first module
        is not a fast tokenizer feeding a plain ONNX Runtime session."""
        import onnxruntime

        first = model[0]
        session = getattr(getattr(first, "auto_model", None), "model", None)
        tokenizer: Any = getattr(first, "tokenizer", None)
        if not isinstance(session, onnxruntime.InferenceSession):
            return None
        if not getattr(tokenizer, "is_fast", False) or tokenizer.pad_token_id is None:
            return None
        inputs = {i.name for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        if not inputs <= set(_INPUTS) or TOKEN_OUTPUT not in outputs:
            return None
        return cls.for_model(model, session, tokenizer)

    @property
    def unit_output(self) -> bool:
        return self._unit_output

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text, special tokens included, before truncation."""
        return [len(e.ids) for e in self._counter.encode_batch(list(texts))]

    def embed(self, texts: Sequence[str]) -> tuple[Vectors, list[int]]:
        """Unit vectors for one model call, and each text's tokens within the window."""
        encodings = self._tokenizer.encode_batch(list(texts))
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        arrays = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": mask,
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        feed = {name: arrays[name] for name in self._inputs}
        if self.pools_in_graph:
            (vectors,) = self._session.run([SENTENCE_OUTPUT], feed)
        else:
            vectors = self._pool_with_torch(self._session.run([TOKEN_OUTPUT], feed)[0], mask)
        if not self._unit_output:
            vectors = normalize_rows(vectors)
        return vectors, [int(n) for n in mask.sum(axis=1)]

    def _pool_with_torch(self, hidden: Any, mask: Any) -> Any:
        import torch

        features: dict[str, Any] = {
            "token_embeddings": torch.from_numpy(hidden),
            "attention_mask": torch.from_numpy(mask),
        }
        with torch.inference_mode():
            for module in self._modules:
                features = module(features)
        return features[SENTENCE_OUTPUT].float().numpy()

    def agrees_with(self, reference: Callable[[list[str]], Vectors]) -> bool:
        """Do probe texts embed as `reference` (sentence-transformers' path) embeds them: one
        by one and as a padded batch, with case, accents, emoji and a text past the window?"""
        probes = [
            "What Causes Rain?",
            "Ünïcode façade, naïve café — 東京 😀 and MIXED case",
            " ".join(["truncation"] * (self.max_tokens + 16)),
        ]
        calls = [probes, *([p] for p in probes)]
        for texts in calls:
            got, _ = self.embed(texts)
            expected = normalize_rows(reference(texts))
            if got.shape != expected.shape or np.abs(got - expected).max() > _TOLERANCE:
                return False
        return True
