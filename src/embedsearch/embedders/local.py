"""Local Sentence Transformers models, fully offline: weights come from an installed package."""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.core.errors import InvalidInput
from embedsearch.embedders import light, onnx_cache, openvino_runtime
from embedsearch.embedders.alone import OneTextPerCall
from embedsearch.embedders.base import EmbeddingBatch, Vectors, normalize_rows
from embedsearch.embedders.cpu import pick_backend
from embedsearch.embedders.model_dir import resolve_model_dir
from embedsearch.embedders.onnx_direct import DirectOnnx

log = logging.getLogger(__name__)


def _force_offline() -> None:
    # The weights are on disk; never let a library try the hub (there is no network, and
    # users behind firewalls need the same behaviour).
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


BACKENDS = ("torch", "onnx", "onnx-int8", "openvino-bf16")
# Backends whose vectors depend on the batch (dynamic int8 activation scales, per call): each
# text runs in a call of its own (alone.py).
BATCH_DEPENDENT = ("onnx-int8",)
# Picks one of BACKENDS by the CPU's features at start (see cpu.py).
AUTO = "auto"


class LocalEmbedder:
    """A Sentence Transformers model on the CPU: torch, ONNX Runtime (fp32 or int8 weights), or
    OpenVINO bf16 (openvino_runtime); `auto` picks by the CPU's features.

    ONNX exports are made once and cached under `cache_dir` (see onnx_cache). Once an export
    is cached and verified, later starts serve it through the light runtime (light.py), with
    no torch or sentence-transformers import. Texts go to the model in length-sorted batches
    (token_batches), except on onnx-int8, whose vectors would depend on the batch: there each
    text runs in a call of its own (alone.py)."""

    def __init__(
        self,
        model: str,
        *,
        backend: str = "torch",
        cache_dir: Path | None = None,
        threads: int | None = None,
        batch_size: int = 64,
        batch_tokens: int = 2048,
        light_runtime: bool = True,
        one_text_per_call: bool | None = None,
    ) -> None:
        """`one_text_per_call`: run each text in a model call of its own; None (the default)
        for the backends whose vectors would depend on the batch (BATCH_DEPENDENT). False gives
        the length-sorted batches on every backend (benchmarks compare the two)."""
        if backend not in (*BACKENDS, AUTO):
            choices = ", ".join((*BACKENDS, AUTO))
            raise InvalidInput(f"backend must be one of {choices}", field="backend")
        if backend == AUTO:
            backend = _auto_backend()
        _force_offline()
        self._name, self._model_dir = resolve_model_dir(model)
        self._chunking_tokenizer: light.ChunkingTokenizer | None = None
        self._batch_size = batch_size
        self._batch_tokens = batch_tokens
        threads = threads or os.cpu_count() or 1
        self._model: Any = None  # sentence-transformers' model; None on the light runtime
        served = None
        if cache_dir is not None and light_runtime:
            served = light.load(cache_dir, self._name, backend, threads)
        if served is not None:
            self._backend = backend
            self._direct: DirectOnnx | None = served.direct
            self._max_tokens = served.manifest.max_tokens
            self._dimensions = served.manifest.dimensions
        else:
            self._load_full(backend, cache_dir, threads, record_light=light_runtime)
        self.light = served is not None
        if one_text_per_call is None:
            one_text_per_call = self._backend in BATCH_DEPENDENT
        # Calls run concurrently only on the direct path, a plain ONNX Runtime session.
        workers = threads if self._direct is not None else 1
        self._alone = (
            OneTextPerCall(self._model_call, workers=workers) if one_text_per_call else None
        )
        log.info(
            "loaded local model %s (%d dims, %s backend, %d threads, %s)",
            self._name,
            self._dimensions,
            self._backend,
            threads,
            "light runtime"
            if self.light
            else ("direct calls" if self._direct else "sentence-transformers' calls"),
        )

    def _load_full(
        self, backend: str, cache_dir: Path | None, threads: int, *, record_light: bool
    ) -> None:
        """Load through sentence-transformers (building the export if needed) and, with
        `record_light` and where the light runtime can serve it, check the export against the
        model's own torch vectors and record it for the light runtime of later starts. An
        export whose vectors are not the model's (another model's graph under its name) is
        rebuilt, once."""
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # we report truncation
        for attempt in (1, 2):
            self._model, self._backend = _load(
                self._model_dir, self._name, backend, cache_dir, threads
            )
            self._max_tokens = int(self._model.max_seq_length)
            self._dimensions = int(self._model.get_embedding_dimension())
            self._direct = self._attach(cache_dir, threads)
            if cache_dir is None or self._direct is None or not record_light:
                return
            location = light.graph_location(cache_dir, self._name, self._backend)
            if location is None or not self._direct.pools_in_graph:
                return
            cosine = light.verify(self._direct.embed, self._torch_reference(), self._max_tokens)
            if cosine >= light.FOREIGN_BELOW:
                break
            log.warning(
                "%s: the cached %s export gives other vectors than the model (cosine %.3f); %s",
                self._name,
                self._backend,
                cosine,
                "rebuilding it" if attempt == 1 else "serving it through sentence-transformers",
            )
            if attempt == 2:
                return
            onnx_cache.remove_export(onnx_cache.export_dir(cache_dir / "onnx", self._name))
            shutil.rmtree(location[0], ignore_errors=True)
        assert cache_dir is not None and self._direct is not None  # returned above otherwise
        light.save(
            cache_dir,
            self._name,
            self._backend,
            self._direct,
            self._dimensions,
            lambda texts: self._model.encode(texts, batch_size=len(texts)),
            threads,
            # bf16 is checked against the fp32 graph sentence-transformers runs.
            min_cosine=openvino_runtime.MIN_COSINE
            if self._backend == openvino_runtime.BACKEND
            else light.SAME_GRAPH_MIN_COSINE,
        )

    @property
    def one_text_per_call(self) -> bool:
        """Does each text run in a model call of its own (the same vector in any batch)?"""
        return self._alone is not None

    def _torch_reference(self) -> Callable[[list[str]], Vectors]:
        """The model's own vectors (sentence-transformers on torch, fp32): the reference an
        export is checked against once, before it is served light. The model loads on the
        first call, once."""
        from sentence_transformers import SentenceTransformer

        @functools.cache
        def model() -> Any:
            return SentenceTransformer(str(self._model_dir), device="cpu", local_files_only=True)

        def encode(texts: list[str]) -> Vectors:
            return np.asarray(model().encode(texts, batch_size=len(texts)), dtype=np.float32)

        return encode

    def _attach(self, cache_dir: Path | None, threads: int) -> DirectOnnx | None:
        """The direct call path of the backend loaded; openvino-bf16 falls back to onnx-int8
        (fp32 ONNX without int8 kernels) where it cannot run or embeds differently."""
        if self._backend == "torch":
            return None
        if self._backend == openvino_runtime.BACKEND:
            assert cache_dir is not None  # _load refused to load without one
            export = onnx_cache.export_dir(cache_dir / "onnx", self._name)
            try:
                return openvino_runtime.load(
                    self._model,
                    export,
                    cache_dir / "openvino",
                    threads,
                    lambda texts: self._forward(self._model.preprocess(texts)),
                )
            # No openvino package, a model it cannot compile, or vectors that differ.
            except Exception as exc:
                self._model, self._backend = _load(
                    self._model_dir, self._name, "onnx-int8", cache_dir, threads
                )
                log.warning(
                    "%s: openvino-bf16 not used (%s); using the %s backend instead",
                    self._name,
                    exc,
                    self._backend,
                )
        return self._attach_direct()

    def _attach_direct(self) -> DirectOnnx | None:
        """The direct ONNX path (onnx_direct), where it gives sentence-transformers' vectors."""
        direct = DirectOnnx.attach(self._model)
        if direct is None:
            log.info("%s: calling ONNX through sentence-transformers' modules", self._name)
            return None
        if not direct.agrees_with(lambda texts: self._forward(self._model.preprocess(texts))):
            log.warning(
                "%s: direct ONNX calls embed probe texts differently from sentence-transformers; "
                "using sentence-transformers' path",
                self._name,
            )
            return None
        return direct

    @property
    def name(self) -> str:
        return self._name

    @property
    def backend(self) -> str:
        """The backend actually running (onnx-int8 falls back to onnx where no int8 kernel fits,
        openvino-bf16 to onnx-int8 where it cannot run or embeds differently)."""
        return self._backend

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @property
    def tokenizer(self) -> light.ChunkingTokenizer:
        """The model's own tokenizer, for token-aware chunking: a separate instance from the
        model call's, built from the same tokenizer files."""
        if self._chunking_tokenizer is None:
            if self._direct is not None:
                source = self._direct.tokenizer_json
            else:
                source = self._model.tokenizer.backend_tokenizer.to_str()
            self._chunking_tokenizer = light.ChunkingTokenizer(source)
        return self._chunking_tokenizer

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if self._direct is not None:
            return self._direct.count_tokens(texts)
        encoded = self._model.tokenizer(
            list(texts),
            add_special_tokens=True,
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return [len(ids) for ids in encoded["input_ids"]]

    def embed(self, texts: Sequence[str]) -> EmbeddingBatch:
        if len(texts) == 1:
            return self._embed_one(texts[0])
        counts = self.count_tokens(texts)
        if self._alone is not None and texts:
            vectors = self._alone.embed(texts)[0]
            return EmbeddingBatch(vectors, counts, [count > self._max_tokens for count in counts])
        vectors = np.empty((len(texts), self._dimensions), dtype=np.float32)
        for batch in token_batches(
            counts,
            max_tokens=self._max_tokens,
            budget=self._batch_tokens,
            max_size=self._batch_size,
        ):
            vectors[batch] = self._model_call([texts[i] for i in batch])[0]
        truncated = [count > self._max_tokens for count in counts]
        return EmbeddingBatch(vectors, counts, truncated)

    def _embed_one(self, text: str) -> EmbeddingBatch:
        """One text (a query, mostly): its length comes from the model call's own tokenization,
        which saves a second pass; only a text that fills the window is counted again, to tell
        whether it was cut."""
        vectors, (count,) = self._model_call([text])
        if count >= self._max_tokens:
            count = self.count_tokens([text])[0]
        return EmbeddingBatch(vectors, [count], [count > self._max_tokens])

    def _model_call(self, texts: list[str]) -> tuple[Vectors, list[int]]:
        """Unit vectors for one model call, and each text's tokens within the window."""
        if self._direct is not None:
            return self._direct.embed(texts)
        features = self._model.preprocess(texts)
        counts = [int(n) for n in features["attention_mask"].sum(dim=1)]
        return normalize_rows(self._forward(features)), counts

    def _forward(self, features: dict[str, Any]) -> Any:
        """One model call through sentence-transformers' own modules (transformer, pooling):
        what encode() does for one batch, without its per-call sorting, device moves and
        row-by-row copies, which cost ~0.2 ms of a query."""
        import torch

        with torch.inference_mode():
            embeddings = self._model(features)["sentence_embedding"]
        return embeddings.float().numpy()

    def close(self) -> None:
        if self._alone is not None:
            self._alone.close()


# What one model call costs beyond its tokens, in tokens: fixed work per call (tokenizer,
# ONNX Runtime's per-node overhead, pooling) measured at ~0.7 ms against ~30 us a token.
_CALL_COST_TOKENS = 24


def token_batches(
    counts: Sequence[int], *, max_tokens: int, budget: int, max_size: int
) -> list[list[int]]:
    """Group text indexes into model batches of similar length, as cheaply as possible.

    A batch costs its padded size (texts x longest text) plus a fixed cost per call; every
    batch stays within `budget` padded tokens and `max_size` texts. Sorted by length, the best
    split into consecutive runs is found exactly (dynamic programming). On a CPU the model's
    time grows with the padded tokens, so one batch of 32 queries of 10-50 tokens, padded to
    50, takes nearly as long as 32 single calls; runs of similar length remove that padding.
    Long texts go in small batches (cache-sized work), short ones in large."""
    order = sorted(range(len(counts)), key=lambda i: counts[i])
    lengths = [min(counts[i], max_tokens) for i in order]
    # best[j]: cheapest cost of the first j texts; cut[j]: where its last batch starts.
    best = [0] * (len(order) + 1)
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        longest = lengths[j - 1]  # sorted: the last text of a run is its longest
        best[j], cut[j] = best[j - 1] + _CALL_COST_TOKENS + longest, j - 1
        for i in range(j - 2, max(-1, j - 1 - max_size), -1):
            size = j - i
            if size * longest > budget:
                break
            cost = best[i] + _CALL_COST_TOKENS + size * longest
            if cost < best[j]:
                best[j], cut[j] = cost, i
    batches: list[list[int]] = []
    j = len(order)
    while j > 0:
        batches.append(order[cut[j] : j])
        j = cut[j]
    return batches[::-1]


def _load(
    model_dir: Path, name: str, backend: str, cache_dir: Path | None, threads: int
) -> tuple[Any, str]:
    """Load the model on the requested backend; returns (model, backend actually used)."""
    if backend == "torch":
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        return model.eval(), "torch"

    import torch

    # torch only pools and normalizes here; its idle threads would spin against ONNX Runtime's.
    torch.set_num_threads(1)

    # openvino-bf16 loads the fp32 export too: OpenVINO compiles that file, its ONNX Runtime
    # session is the reference the compiled model is checked against, and its tokenizer and
    # modules serve the OpenVINO path.
    quantize_for = onnx_cache.quantization_target() if backend == "onnx-int8" else None
    if backend == "onnx-int8" and quantize_for is None:
        log.warning("no int8 kernels for this CPU (needs AVX2, AVX-512 or ARM64); using fp32 ONNX")
        backend = "onnx"
    if cache_dir is None:
        raise InvalidInput("the ONNX backends need a cache directory", field="data_dir")
    model = onnx_cache.load_cached(
        model_dir,
        onnx_cache.export_dir(cache_dir / "onnx", name),
        quantize_for=quantize_for,
        model_kwargs={
            "session_options": light.session_options(threads),
            "provider": "CPUExecutionProvider",
        },
    )
    return model, backend


def _auto_backend() -> str:
    backend, reason = pick_backend()
    log.info("backend auto: %s, because %s", backend, reason)
    return backend
