"""ONNX exports of a Sentence Transformers model, made once and cached under the data dir.

sentence-transformers exports the model with Optimum (`backend="onnx"`). For int8 we first fuse
the graph with its `export_optimized_onnx_model` (ONNX Runtime's transformer optimizer: one
Attention node per layer, fused GELU) and then quantize the fused graph, which runs 1.3-1.4x
faster than quantizing the plain export (measured on a 2-core AVX-512 VNNI CPU: 107 vs 81 long
texts/s, 1.07 vs 1.51 ms for a 21-token query) at the same fidelity (mean cosine to torch 0.993
vs 0.992). sentence-transformers' `export_dynamic_quantized_onnx_model` cannot quantize a fused
graph (shape inference does not type ONNX Runtime's own operators), so that step calls ONNX
Runtime's quantizer with the same per-CPU settings; a model the optimizer does not know falls
back to `export_dynamic_quantized_onnx_model` on the plain export.

The int8 graph then gets sentence-transformers' own modules after the transformer (Pooling,
Dense, Normalize), traced to ONNX by torch's exporter the way Optimum exports Sentence
Transformers models, as a second output, `sentence_embedding`: one ONNX Runtime run gives the
sentence vector, without ~0.1 ms of torch ops after it (see onnx_direct). `last_hidden_state`
stays an output, so sentence-transformers' own path loads and runs the same file.

We keep the result out of site-packages, build it in a temporary folder and rename it into
place (a crash never leaves half a cache), hold a file lock while building (the server and the
CLI may start at once), and rebuild a cache that does not load. Each export's folder names the
library versions and recipe that made it; a new build removes the same model's exports made
otherwise (~110 MB each), which nothing reads again.
"""

from __future__ import annotations

import logging
import platform
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embedsearch.embedders.cpu import cpu_flags as detected_cpu_flags

log = logging.getLogger(__name__)

FP32_FILE = "onnx/model.onnx"
# Names the export recipe in the cache folder: changing how exports are made must not reuse
# exports made the old way.
RECIPE = "fused2"
_FUSED_SUFFIX = "fused"
SENTENCE_OUTPUT = "sentence_embedding"
TOKEN_OUTPUT = "last_hidden_state"
# SkipLayerNormalization is left unfused: ONNX Runtime's CPU kernel for it made the whole model
# ~30% slower than the plain Add + LayerNormalization it replaces (see light.session_options).
_FUSION = {
    "optimization_level": 2,
    "disable_skip_layer_norm_fusion": True,
    "disable_bias_skip_layer_norm_fusion": True,
}


def quantization_target(
    cpu_flags: set[str] | None = None, machine: str | None = None
) -> str | None:
    """The dynamic-quantization config for this CPU: avx512_vnni, avx512, avx2, arm64, or None."""
    machine = (machine or platform.machine()).lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    flags = detected_cpu_flags() if cpu_flags is None else cpu_flags
    for target, flag in (("avx512_vnni", "avx512_vnni"), ("avx512", "avx512f"), ("avx2", "avx2")):
        if flag in flags:
            return target
    return None


def int8_file(target: str) -> str:
    return f"onnx/model_{_int8_suffix(target)}.onnx"


def _int8_suffix(target: str) -> str:
    # Named by us: sentence-transformers' own names differ per config (quint8 for avx2).
    return f"int8_{target}"


@contextmanager
def _quiet_export() -> Iterator[None]:
    """The exporter warns about tracing and advises saving the export, which we do; ONNX
    Runtime's quantizer advises a preprocessing pass (through the root logger) that does not
    apply to dynamic quantization."""
    st_logger = logging.getLogger("sentence_transformers")
    level = st_logger.level
    st_logger.setLevel(logging.ERROR)
    logging.disable(logging.WARNING)  # once per model and machine, for a few seconds
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        st_logger.setLevel(level)


def export_dir(root: Path, name: str) -> Path:
    """The folder of `name`'s export under `root`, named by what made it. The versions come
    from the installed packages' metadata: importing sentence-transformers costs seconds, and
    the light runtime (light.py) finds its export without it."""
    from importlib.metadata import version

    versions = f"st{version('sentence-transformers')}-ort{version('onnxruntime')}"
    return root / f"{name}-{versions}-{RECIPE}"


_EXPORT_NAME = re.compile(r"(?P<model>.+)-st[^-]+-ort[^-]+-[^-]+")


def _remove_stale_exports(current: Path) -> None:
    """Remove the exports of the same model made by other library versions or recipes."""
    match = _EXPORT_NAME.fullmatch(current.name)
    if match is None:
        return
    same_model = re.compile(re.escape(match["model"]) + r"-st[^-]+-ort[^-]+-[^-]+(\.lock)?")
    for path in current.parent.iterdir():
        if path.name in (current.name, f"{current.name}.lock"):
            continue
        if not same_model.fullmatch(path.name):
            continue
        log.info("removing an ONNX export made by other versions: %s", path)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _build(model_dir: Path, destination: Path, quantize_for: str | None) -> None:
    """Export (and maybe quantize) into a temporary folder, then move it into place."""
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
    try:
        log.info("exporting %s to ONNX (once; cached in %s)", model_dir.name, destination)
        with _quiet_export():
            model = SentenceTransformer(
                str(model_dir), backend="onnx", device="cpu", local_files_only=True
            )
        model.save_pretrained(str(staging))
        if quantize_for is not None:
            try:
                with _quiet_export():
                    _quantize_fused(model, staging, quantize_for)
            except Exception as exc:  # an architecture the optimizer does not know
                log.warning("cannot fuse %s (%s); quantizing the plain graph", model_dir.name, exc)
                export_dynamic_quantized_onnx_model(
                    model, quantize_for, str(staging), file_suffix=_int8_suffix(quantize_for)
                )
            try:
                with _quiet_export():
                    append_sentence_output(model, staging / int8_file(quantize_for))
            except Exception as exc:  # modules the tracer cannot follow: pool with torch
                log.warning("cannot add pooling to the %s graph (%s)", model_dir.name, exc)
        shutil.rmtree(destination, ignore_errors=True)
        staging.rename(destination)
        _remove_stale_exports(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _quantize_fused(model: Any, folder: Path, target: str) -> None:
    """Fuse the exported graph, then give it int8 weights with Optimum's settings for `target`."""
    import onnx
    from onnxruntime.quantization import quantize_dynamic
    from optimum.onnxruntime.configuration import AutoQuantizationConfig, OptimizationConfig
    from sentence_transformers import export_optimized_onnx_model

    export_optimized_onnx_model(
        model, OptimizationConfig(**_FUSION), str(folder), file_suffix=_FUSED_SUFFIX
    )
    fused = folder / f"onnx/model_{_FUSED_SUFFIX}.onnx"
    config = getattr(AutoQuantizationConfig, target)(is_static=False)
    quantize_dynamic(
        fused,
        folder / int8_file(target),
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        weight_type=config.weights_dtype,
        op_types_to_quantize=list(config.operators_to_quantize),
        extra_options={
            "WeightSymmetric": config.weights_symmetric,
            "ActivationSymmetric": config.activations_symmetric,
            # The fused operators are ONNX Runtime's own; their outputs are float tensors.
            "DefaultTensorType": onnx.TensorProto.FLOAT,
        },
    )
    fused.unlink()


def append_sentence_output(model: Any, graph_file: Path) -> None:
    """Trace the modules after the transformer and append them to the graph in `graph_file`,
    fed by its `last_hidden_state` and `attention_mask`, as the output `sentence_embedding`."""
    import onnx
    import torch

    graph_model = onnx.load(str(graph_file))
    graph = graph_model.graph
    opset = next(o.version for o in graph_model.opset_import if o.domain in ("", "ai.onnx"))
    (tokens,) = [o for o in graph.output if o.name == TOKEN_OUTPUT]
    hidden = tokens.type.tensor_type.shape.dim[-1].dim_value
    if not hidden:
        raise ValueError(f"{TOKEN_OUTPUT} has no fixed width")

    class ModulesAfterTransformer(torch.nn.Module):
        def __init__(self, modules: list[Any]) -> None:
            super().__init__()
            self.stack = torch.nn.ModuleList(modules)

        def forward(self, token_embeddings: Any, attention_mask: Any) -> Any:
            features = {"token_embeddings": token_embeddings, "attention_mask": attention_mask}
            for module in self.stack:
                features = module(features)
            return features[SENTENCE_OUTPUT]

    traced = graph_file.with_name("pooling.onnx")
    dynamic = {0: "batch", 1: "tokens"}
    try:
        torch.onnx.export(
            ModulesAfterTransformer(list(model)[1:]).eval(),
            (torch.rand(2, 5, hidden), torch.ones(2, 5, dtype=torch.int64)),
            traced,
            input_names=[TOKEN_OUTPUT, "attention_mask"],
            output_names=[SENTENCE_OUTPUT],
            dynamic_axes={
                TOKEN_OUTPUT: dynamic,
                "attention_mask": dynamic,
                SENTENCE_OUTPUT: {0: "batch"},
            },
            opset_version=opset,
            dynamo=False,  # the TorchScript tracer, as Optimum uses for these modules
        )
        pooling = onnx.load(str(traced)).graph
    finally:
        traced.unlink(missing_ok=True)

    def rename(name: str) -> str:
        # The traced graph's inputs are the main graph's tensors; all else gets its own prefix.
        if name in (TOKEN_OUTPUT, "attention_mask", SENTENCE_OUTPUT, ""):
            return name
        return f"pooling/{name}"

    for initializer in pooling.initializer:
        initializer.name = rename(initializer.name)
        graph.initializer.append(initializer)
    for node in pooling.node:
        node.input[:] = [rename(name) for name in node.input]
        node.output[:] = [rename(name) for name in node.output]
        node.name = f"pooling/{node.name or node.op_type}"
        graph.node.append(node)
    graph.output.append(pooling.output[0])
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(graph_file))


def remove_export(folder: Path) -> None:
    """Remove an export (its vectors were found wrong): the next load builds it again."""
    log.info("removing the ONNX export in %s", folder)
    shutil.rmtree(folder, ignore_errors=True)


def load_cached(
    model_dir: Path, cache_dir: Path, *, quantize_for: str | None, model_kwargs: dict[str, Any]
) -> Any:
    """Load the ONNX model from the cache, building or rebuilding the cache if needed."""
    from filelock import FileLock
    from sentence_transformers import SentenceTransformer

    file_name = int8_file(quantize_for) if quantize_for else FP32_FILE
    cache_dir.parent.mkdir(parents=True, exist_ok=True)

    def load() -> Any:
        return SentenceTransformer(
            str(cache_dir),
            backend="onnx",
            device="cpu",
            local_files_only=True,
            model_kwargs={**model_kwargs, "file_name": file_name},
        )

    with FileLock(str(cache_dir) + ".lock"):
        if (cache_dir / file_name).is_file():
            try:
                return load()
            except Exception as exc:  # a corrupt or partial cache: rebuild it, never fail on it
                log.warning(
                    "cached ONNX model in %s does not load (%s); rebuilding", cache_dir, exc
                )
        _build(model_dir, cache_dir, quantize_for)
        return load()
