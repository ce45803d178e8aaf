"""One model call per text, for graphs whose vectors depend on the batch (onnx-int8).

ONNX Runtime's dynamic int8 quantization scales each call's activations by the whole
[batch, tokens, hidden] tensor, padding included, so a text's vector depended on its batch
neighbours: SciFact claims and abstracts alone vs in length-sorted batches of 16, cosine
0.985-0.993. A text that runs alone meets only itself: it gets the same vector, bit for bit,
in any request, so re-embedding unchanged text never moves it.

Measured (2 cores, AVX-512 VNNI, no AMX, all-MiniLM-L6-v2 int8, medians of 5 interleaved
rounds in one process, `python -m benchmarks.onevec`, the machine shared at load 4-7): SciFact
abstracts (256 tokens) one per call in turn ran at 1.17-1.29x the batches of 16, whose larger
tensors gain nothing at that length; claims (~21 tokens) at 0.53-0.68x, each call's fixed
cost and two threads' hand-offs over small matrices. Several texts therefore run `workers`
calls at once on the same session (ONNX Runtime runs one session from several threads; its
threads do not spin, so the calls share the cores): abstracts 1.28-1.29x, claims 0.73-0.85x.
A second session of one thread per call was no faster head to head and cost 60 MB, not 26.
All of SciFact (5183 abstracts) took 193 s against 264 s in token-budget batches; nDCG@10
0.6443 (torch fp32: 0.6451). Batch-independent alternatives measured worse: static int8
(calibrated activation scales) 0.89 cosine to fp32, or 0.986 at 0.59x with the FFN output
layers left fp32; fp32 ONNX in batches 0.3-0.6x; openvino-bf16 on this CPU (AVX-512 BF16, no
AMX) 0.35x on claims, 0.8x on abstracts, 32 ms a query.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from embedsearch.embedders.base import Vectors

# One model call: unit vectors and each text's tokens within the window.
ModelCall = Callable[[list[str]], tuple[Vectors, list[int]]]


class OneTextPerCall:
    """Embeds each text in a call of its own through `call`, `workers` calls at once (`call`
    must allow that: an ONNX Runtime session does)."""

    def __init__(self, call: ModelCall, *, workers: int = 1) -> None:
        self._call = call
        self._pool = (
            ThreadPoolExecutor(workers, thread_name_prefix="one-text-call") if workers > 1 else None
        )

    def embed(self, texts: Sequence[str]) -> tuple[Vectors, list[int]]:
        if self._pool is None or len(texts) == 1:
            results = [self._call([text]) for text in texts]
        else:
            # Longest first, so no long text starts last while the other workers idle.
            order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
            runs = self._pool.map(lambda i: self._call([texts[i]]), order)
            done = dict(zip(order, runs, strict=True))
            results = [done[i] for i in range(len(texts))]
        vectors = np.concatenate([vector for vector, _ in results])
        return vectors, [count for _, (count,) in results]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
