"""The openvino-bf16 backend: the cached fp32 ONNX export, compiled by OpenVINO for bf16.

On a CPU with AMX, OpenVINO's CPU plugin runs a bf16 model's matrix multiplies on the matrix
units: 2.0-2.2x the texts/s of onnx-int8 (ONNX Runtime, AVX-512 VNNI) with vectors at cosine
1.0000 to fp32 (issue 14). bf16 has no per-call activation scales, so a text gets the same
vector alone or in any batch, unlike dynamic int8.

What it runs, all cached under the data dir's cache (`openvino/<export>-ov<version>/`):
- the fp32 export onnx_cache made (what the `onnx` backend loads), copied with
  sentence-transformers' own modules after the transformer (Pooling, Normalize) traced in by
  onnx_cache.append_sentence_output, as the int8 export has them: one inference gives the unit
  sentence vector, no torch or numpy pooling after it;
- OpenVINO's compiled blob of it (CACHE_DIR): a cached compile takes ~0.1-0.3 s instead of ~1 s.
  OpenVINO checks a blob before importing it and compiles again over one that does not load.

Tokenization and the call path are onnx_direct's (the model's fast tokenizer, called directly),
with OpenVINO behind the session interface it calls. The compiled model is used only once its
vectors agree with sentence-transformers' on probe texts (`light.verify`); else LocalEmbedder
falls back to another backend and says so.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.embedders import light, onnx_cache
from embedsearch.embedders.base import Vectors
from embedsearch.embedders.onnx_direct import DirectOnnx

log = logging.getLogger(__name__)

BACKEND = "openvino-bf16"
POOLED_FILE = "model_pooled.onnx"
BLOB_DIR = "compiled"
VERIFIED_FILE = "verified.json"
# bf16 keeps 8 bits of mantissa: vectors move by ~1e-4 in cosine, never by 1e-3.
MIN_COSINE = 0.999


def compile_config(threads: int, cache_dir: Path) -> dict[str, Any]:
    """bf16 on the matrix units; LATENCY: one stream, every thread on each call (the model
    worker calls one batch at a time)."""
    return {
        "INFERENCE_PRECISION_HINT": "bf16",
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads,
        "CACHE_DIR": str(cache_dir),
    }


def cache_folder(root: Path, export: Path) -> Path:
    """Where this export's OpenVINO files go, named by the export and OpenVINO's version."""
    import openvino

    version = openvino.get_version().split("-", 1)[0]
    return root / f"{export.name}-ov{version}"


@dataclass(frozen=True)
class _Port:
    name: str


class OpenVinoSession:
    """A compiled OpenVINO model behind the calls DirectOnnx makes of an ONNX Runtime session."""

    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        # An infer request is not thread-safe; chunking and the model worker may share us.
        self._lock = threading.Lock()

    def get_inputs(self) -> list[_Port]:
        return [_Port(port.get_any_name()) for port in self._compiled.inputs]

    def get_outputs(self) -> list[_Port]:
        return [_Port(port.get_any_name()) for port in self._compiled.outputs]

    def run(self, names: Sequence[str], feed: Mapping[str, Any]) -> list[Any]:
        with self._lock:
            results = self._request.infer(dict(feed))
            # Copies: the request reuses its output buffers on the next call.
            return [np.array(results[self._compiled.output(name)]) for name in names]


def pooled_graph(model: Any, export: Path, folder: Path) -> Path:
    """The fp32 export with the sentence output traced in, built once into `folder`."""
    from filelock import FileLock

    target = folder / POOLED_FILE
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not target.is_file():
            _build_pooled(model, export / onnx_cache.FP32_FILE, target)
    return target


def _build_pooled(model: Any, source: Path, target: Path) -> None:
    # Built beside the target and renamed into place: a crash never leaves half a graph.
    staging = target.with_name(f".{target.stem}.{os.getpid()}.onnx")
    log.info("adding pooling to %s for OpenVINO (once; cached in %s)", source, target.parent)
    try:
        shutil.copyfile(source, staging)
        with onnx_cache._quiet_export():  # the tracer warns as it does at export
            onnx_cache.append_sentence_output(model, staging)
        staging.replace(target)
    finally:
        staging.unlink(missing_ok=True)


def compile_graph(graph: Path, threads: int) -> Any:
    """Compile `graph` for the CPU in bf16, through OpenVINO's blob cache beside it."""
    import openvino

    config = compile_config(threads, graph.parent / BLOB_DIR)
    # From the path, not a read model: a cached blob then skips reading the ONNX file.
    return openvino.Core().compile_model(str(graph), "CPU", config)


class Disagrees(ValueError):
    """The compiled model's vectors are not sentence-transformers' (within bf16 rounding)."""


def load(
    model: Any, export: Path, root: Path, threads: int, reference: Callable[[list[str]], Vectors]
) -> DirectOnnx:
    """The direct call path for `model` (sentence-transformers' fp32 ONNX model of `export`)
    on OpenVINO bf16, checked against `reference` once per built graph; a pooled graph that
    does not compile is rebuilt once. Raises Disagrees if the check fails."""
    folder = cache_folder(root, export)
    graph = pooled_graph(model, export, folder)
    try:
        compiled = compile_graph(graph, threads)
    except Exception as exc:  # a corrupt or truncated cached graph
        log.warning("cached OpenVINO graph %s does not compile (%s); rebuilding", graph, exc)
        graph.unlink(missing_ok=True)
        shutil.rmtree(folder / BLOB_DIR, ignore_errors=True)
        graph = pooled_graph(model, export, folder)
        compiled = compile_graph(graph, threads)
    direct = DirectOnnx.for_model(model, OpenVinoSession(compiled), model[0].tokenizer)
    if not _verified(graph):
        # ~1 s of probe runs on 2 cores: once per graph, not at every start.
        cosine = light.verify(direct.embed, reference, direct.max_tokens)
        if cosine < MIN_COSINE:
            raise Disagrees(f"cosine {cosine:.4f} to sentence-transformers' vectors < {MIN_COSINE}")
        _mark_verified(graph, cosine)
    return direct


def _stamp(graph: Path) -> str:
    # Size and time of the graph checked: a rebuilt or replaced graph is checked again.
    stat = graph.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _verified(graph: Path) -> bool:
    try:
        marker = json.loads((graph.parent / VERIFIED_FILE).read_text())
        return bool(marker["graph"] == _stamp(graph))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _mark_verified(graph: Path, cosine: float) -> None:
    marker = {"graph": _stamp(graph), "min_cosine": cosine}
    (graph.parent / VERIFIED_FILE).write_text(json.dumps(marker))
