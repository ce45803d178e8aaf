"""One model call per text, for graphs whose vectors depend on the batch (onnx-int8).

ONNX Runtime's dynamic int8 quantization scales each call's activations by the whole
[batch, tokens, hidden] tensor, padding included, so a text's vector depended on its batch
neighbours: SciFact claims and abstracts alone vs in length-sorted batches of 16, cosine
0.987-0.993. A text that runs alone meets only itself: it gets the same vector in any
request, so re-embedding unchanged text never moves it.

Measured (2 cores, AVX-512 VNNI, no AMX, all-MiniLM-L6-v2 int8, medians of 5 runs in one
process, machine shared with load 2-4, benchmarks/onevec.py): SciFact abstracts (256 tokens)
one per call ran at 1.07-1.32x the batches of 16, whose larger tensors gain nothing at that
length; claims (~21 tokens) at 0.54x, each call's fixed cost and the two threads' hand-offs
over small matrices. So a request of several texts runs them on a second session of one
thread, `workers` calls at once: claims 0.94x the batches of 16, abstracts 1.07-1.31x. A
single text (a query) runs on the session of all threads, the lower latency. ONNX Runtime's
int8 kernels gave the same bits on one thread as on two (integer products; each row's float
work done by one thread), and a test holds the two paths to cosine >= 0.9999.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from embedsearch.embedders.base import Vectors

log = logging.getLogger(__name__)

# One model call: unit vectors and each text's tokens within the window.
ModelCall = Callable[[list[str]], tuple[Vectors, list[int]]]


class OneTextPerCall:
    """Embeds each text in a call of its own: through `call` (the session of all threads)
    one after another, or, for several texts, through the one-thread call `open_parallel`
    returns, `workers` at once. `open_parallel` runs on first need, once; where it fails,
    texts run one after another."""

    def __init__(
        self,
        call: ModelCall,
        *,
        open_parallel: Callable[[], ModelCall] | None = None,
        workers: int = 1,
    ) -> None:
        self._call = call
        self._open_parallel = open_parallel if workers > 1 else None
        self._workers = workers
        self._parallel: tuple[ModelCall, ThreadPoolExecutor] | None = None
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> tuple[Vectors, list[int]]:
        parallel = self._parallel_call() if len(texts) > 1 else None
        if parallel is None:
            results = [self._call([text]) for text in texts]
        else:
            call, pool = parallel
            # Longest first, so no long text starts last while the other worker idles.
            order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
            done = dict(zip(order, pool.map(lambda i: call([texts[i]]), order), strict=True))
            results = [done[i] for i in range(len(texts))]
        vectors = np.concatenate([vector for vector, _ in results])
        return vectors, [count for _, (count,) in results]

    def _parallel_call(self) -> tuple[ModelCall, ThreadPoolExecutor] | None:
        if self._open_parallel is None:
            return self._parallel
        with self._lock:
            opener, self._open_parallel = self._open_parallel, None
            if opener is None:  # another thread opened it meanwhile
                return self._parallel
            try:
                call = opener()
            except Exception as exc:  # a session that does not open: the texts still run
                log.warning("one-thread session does not open (%s); texts run in turn", exc)
                return None
            pool = ThreadPoolExecutor(self._workers, thread_name_prefix="one-text-call")
            self._parallel = (call, pool)
            return self._parallel

    def close(self) -> None:
        if self._parallel is not None:
            self._parallel[1].shutdown()
