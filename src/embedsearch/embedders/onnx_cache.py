"""ONNX exports of a Sentence Transformers model, made once and cached under the data dir.

sentence-transformers exports the model with Optimum (`backend="onnx"`) and quantizes it with
`export_dynamic_quantized_onnx_model`; we keep the result out of site-packages, build it in a
temporary folder and rename it into place (a crash never leaves half a cache), hold a file
lock while building (the server and the CLI may start at once), and rebuild a cache that does
not load.
"""

from __future__ import annotations

import logging
import platform
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FP32_FILE = "onnx/model.onnx"


def quantization_target(
    cpu_flags: set[str] | None = None, machine: str | None = None
) -> str | None:
    """The dynamic-quantization config for this CPU: avx512_vnni, avx512, avx2, arm64, or None."""
    machine = (machine or platform.machine()).lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    flags = _cpu_flags() if cpu_flags is None else cpu_flags
    for target, flag in (("avx512_vnni", "avx512_vnni"), ("avx512", "avx512f"), ("avx2", "avx2")):
        if flag in flags:
            return target
    return None


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def int8_file(target: str) -> str:
    return f"onnx/model_{_int8_suffix(target)}.onnx"


def _int8_suffix(target: str) -> str:
    # Named by us: sentence-transformers' own names differ per config (quint8 for avx2).
    return f"int8_{target}"


@contextmanager
def _quiet_export() -> Iterator[None]:
    """The exporter warns about tracing and advises saving the export, which we do."""
    st_logger = logging.getLogger("sentence_transformers")
    level = st_logger.level
    st_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        st_logger.setLevel(level)


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
            export_dynamic_quantized_onnx_model(
                model, quantize_for, str(staging), file_suffix=_int8_suffix(quantize_for)
            )
        shutil.rmtree(destination, ignore_errors=True)
        staging.rename(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
