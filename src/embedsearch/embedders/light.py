"""The light runtime: a cached, verified export served with ONNX Runtime or OpenVINO and the
model's tokenizer through `tokenizers`, importing neither torch, transformers nor
sentence-transformers.

Importing sentence-transformers (torch and transformers with it) costs 2.5-4.5 s of every start
and several hundred MB of memory; serving an export needs none of it. So the first start on a
machine builds the export through sentence-transformers as before (onnx_cache,
openvino_runtime), checks the direct call path against sentence-transformers' own `encode()`
(`verify`), and writes a manifest beside the graph (`save`): the graph's and the tokenizer's
size and time, the tokenizer as configured for the model (truncation at its window, its
padding), the dimensions, the window, whether the output is unit length, and the check's result.

Later starts read the manifest (`load`). A graph or tokenizer file that changed since (rebuilt,
truncated, replaced), a manifest of another model or format, or a session that does not load,
and `load` answers None: the full path runs again, rebuilds what is broken and writes a new
manifest. Only graphs that pool in the graph (the `sentence_embedding` output) are served light.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.embedders import onnx_cache
from embedsearch.embedders.base import Vectors, normalize_rows
from embedsearch.embedders.onnx_direct import DirectOnnx

log = logging.getLogger(__name__)

FORMAT = 1
# The backends the light runtime serves, and the runtime each one's graph runs on.
RUNTIMES = {"onnx-int8": "onnxruntime", "openvino-bf16": "openvino"}
# The light path runs the very graph sentence-transformers' path runs: only float rounding
# may differ. (bf16 is checked against fp32 by openvino_runtime with its own bound first.)
SAME_GRAPH_MIN_COSINE = 0.9999
# Against the model's own torch vectors, int8 stays above ~0.98 and bf16 above 0.999; another
# model's vectors are far below (unrelated models: ~0 to 0.6).
FOREIGN_BELOW = 0.9
PROBES = (
    "What Causes Rain?",
    "Ünïcode façade, naïve café — 東京 😀 and MIXED case",
    "Mitochondria produce ATP through oxidative phosphorylation in eukaryotic cells.",
    "[CLS] special tokens typed as text [SEP] [PAD]",
)


@dataclass(frozen=True)
class Manifest:
    format: int
    model: str
    backend: str
    graph: str  # file names, in the manifest's folder
    tokenizer: str
    graph_stamp: str
    tokenizer_stamp: str
    dimensions: int
    max_tokens: int
    unit_output: bool
    min_cosine: float  # the check's result, against sentence-transformers' encode()


@dataclass(frozen=True)
class LightModel:
    direct: DirectOnnx
    manifest: Manifest


def graph_location(cache_dir: Path, name: str, backend: str) -> tuple[Path, str] | None:
    """Where `backend`'s graph of model `name` lives: (folder, file name in it), or None for
    a backend the light runtime does not serve on this CPU."""
    export = onnx_cache.export_dir(cache_dir / "onnx", name)
    if backend == "onnx-int8":
        target = onnx_cache.quantization_target()
        return (export, onnx_cache.int8_file(target)) if target else None
    if backend == "openvino-bf16":
        from embedsearch.embedders import openvino_runtime

        try:
            folder = openvino_runtime.cache_folder(cache_dir / "openvino", export)
        except ImportError:  # no openvino package: the full path falls back and says so
            return None
        return folder, openvino_runtime.POOLED_FILE
    return None


def _manifest_file(folder: Path, graph: str) -> Path:
    return folder / f"light-{Path(graph).stem}.json"


def _stamp(path: Path) -> str:
    # Size and time: a rebuilt, truncated or replaced file no longer matches.
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def load(cache_dir: Path, name: str, backend: str, threads: int) -> LightModel | None:
    """The light runtime for `backend`, if its export is cached and was verified; else None."""
    if backend not in RUNTIMES:
        return None
    location = graph_location(cache_dir, name, backend)
    if location is None:
        return None
    folder, graph = location
    manifest = _read_manifest(_manifest_file(folder, graph), name, backend, graph)
    if manifest is None:
        return None
    try:
        tokenizer_json = (folder / manifest.tokenizer).read_text(encoding="utf-8")
        session = _open_session(folder / graph, backend, threads)
        direct = DirectOnnx(
            session, tokenizer_json, manifest.max_tokens, unit_output=manifest.unit_output
        )
    except Exception as exc:  # a file the stamps did not catch: the full path rebuilds it
        log.warning("cached %s export in %s does not load (%s); rebuilding", backend, folder, exc)
        return None
    return LightModel(direct, manifest)


def _read_manifest(path: Path, name: str, backend: str, graph: str) -> Manifest | None:
    try:
        manifest = Manifest(**json.loads(path.read_text(encoding="utf-8")))
        current = (
            _stamp(path.parent / manifest.graph),
            _stamp(path.parent / manifest.tokenizer),
        )
    except (OSError, ValueError, TypeError):  # none yet, half-written, or another format
        return None
    expected = (FORMAT, name, backend, graph)
    if (manifest.format, manifest.model, manifest.backend, manifest.graph) != expected:
        return None
    if current != (manifest.graph_stamp, manifest.tokenizer_stamp):
        return None
    return manifest


def _open_session(graph: Path, backend: str, threads: int) -> Any:
    if RUNTIMES[backend] == "openvino":
        from embedsearch.embedders import openvino_runtime

        return openvino_runtime.OpenVinoSession(openvino_runtime.compile_graph(graph, threads))
    import onnxruntime

    return onnxruntime.InferenceSession(
        str(graph), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
    )


def session_options(threads: int) -> Any:
    """ONNX Runtime settings for our sessions, the full path's and the light one's (tests load
    reference models with the same)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # ONNX Runtime fuses Add + LayerNormalization into SkipLayerNormalization when it loads a
    # model; that kernel is slow on CPU here (a 256-token text: 8.5 ms without the fusion,
    # 10.8 ms with it, int8 on 2 threads), so leave the two nodes as they are.
    options.add_session_config_entry(
        "optimization.disable_specified_optimizers", "SkipLayerNormFusion"
    )
    # ONNX Runtime's pool threads spin for a while after every run, waiting for the next. Under
    # load that takes the cores PostgreSQL and the event loop need: with it off, 16 clients on
    # /search/pgvector went from 91 to 194 QPS and the server's CPU per search from 10.4 to
    # 4.5 ms (benchmarks/load.py, same run, same machine); one text alone pays ~0.06 ms.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def save(
    cache_dir: Path,
    name: str,
    backend: str,
    direct: DirectOnnx,
    dimensions: int,
    encode: Callable[[list[str]], Vectors],
    threads: int,
    min_cosine: float = SAME_GRAPH_MIN_COSINE,
) -> bool:
    """Write the manifest that lets later starts serve `backend` light, once the light path,
    opened from the files it names, embeds as `encode` (sentence-transformers' encode())
    does, to `min_cosine`. Returns whether it was written."""
    location = graph_location(cache_dir, name, backend)
    if location is None or not direct.pools_in_graph:
        return False
    folder, graph = location
    tokenizer = f"light-{Path(graph).stem}.tokenizer.json"
    _write_atomically(folder / tokenizer, direct.tokenizer_json)
    try:
        session = _open_session(folder / graph, backend, threads)
        light = DirectOnnx(
            session, direct.tokenizer_json, direct.max_tokens, unit_output=direct.unit_output
        )
        cosine = verify(light.embed, encode, direct.max_tokens)
    except Exception as exc:
        log.warning("%s: the light runtime does not load (%s); keeping the full one", name, exc)
        return False
    if cosine < min_cosine:
        log.warning(
            "%s: the light runtime embeds differently from sentence-transformers (cosine %.5f);"
            " keeping the full one",
            name,
            cosine,
        )
        return False
    manifest = Manifest(
        format=FORMAT,
        model=name,
        backend=backend,
        graph=graph,
        tokenizer=tokenizer,
        graph_stamp=_stamp(folder / graph),
        tokenizer_stamp=_stamp(folder / tokenizer),
        dimensions=dimensions,
        max_tokens=direct.max_tokens,
        unit_output=direct.unit_output,
        min_cosine=cosine,
    )
    _write_atomically(_manifest_file(folder, graph), json.dumps(asdict(manifest), indent=2))
    log.info("%s: %s export verified for the light runtime (cosine %.6f)", name, backend, cosine)
    return True


def verify(
    embed: Callable[[list[str]], tuple[Vectors, list[int]]],
    encode: Callable[[list[str]], Vectors],
    max_tokens: int,
) -> float:
    """The lowest cosine between `embed`'s vectors and `encode`'s over probe texts (case,
    accents, emoji, special tokens typed as text, a text past the window), one by one and as
    one padded batch."""
    probes = [*PROBES, " ".join(["truncation"] * (max_tokens + 16))]
    lowest = 1.0
    for texts in [probes, *([p] for p in probes)]:
        got = normalize_rows(embed(texts)[0])
        expected = normalize_rows(encode(texts))
        if got.shape != expected.shape:
            return -1.0
        lowest = min(lowest, float(np.einsum("ij,ij->i", got, expected).min()))
    return lowest


def _write_atomically(path: Path, text: str) -> None:
    # Written beside and renamed into place: a reader never sees half a file.
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        staging.write_text(text, encoding="utf-8")
        staging.replace(path)
    finally:
        staging.unlink(missing_ok=True)


class ChunkingTokenizer:
    """The model's tokenizer as semchunk counts with it: no special tokens added, and special
    tokens typed in the text counted as text (transformers' `split_special_tokens`), as
    semchunk asks of a transformers tokenizer. A separate instance from the model call's."""

    def __init__(self, tokenizer_json: str) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._tokenizer.encode_special_tokens = True

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def get_vocab(self) -> dict[str, int]:
        # semchunk sizes its fast path by the longest token's characters.
        return dict(self._tokenizer.get_vocab(with_added_tokens=True))
