"""The light runtime (embedders/light.py): a cached, verified export served with ONNX Runtime and
`tokenizers` alone, in a process that never imports torch, transformers or
sentence-transformers; checked against sentence-transformers' encode() on the same texts, and
never used for an export that changed or is not the model's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedsearch.core.chunking import ChunkingOptions, split
from embedsearch.embedders import light, onnx_cache
from embedsearch.embedders.local import LocalEmbedder

MODEL = "all-MiniLM-L6-v2"
BACKEND = "onnx-int8"
TEXTS = [
    "What causes rain?",
    "The mitochondria is the powerhouse of the cell, producing ATP through respiration.",
    "Ünïcode façade, naïve café — 東京 😀 MIXED Case",
    "[CLS] typed special tokens [SEP] stay text",
    "",
    " ".join(["cell"] * 300),  # past the 256-token window
]

_LIGHT_PROCESS = """
import json, sys
from pathlib import Path
from embedsearch.embedders.local import LocalEmbedder

cache, texts = Path(sys.argv[1]), json.loads(sys.argv[2])
embedder = LocalEmbedder("all-MiniLM-L6-v2", backend="onnx-int8", cache_dir=cache)
alone = [embedder.embed([text]) for text in texts]
chunks = embedder.tokenizer.encode(texts[1])
heavy = ("torch", "sentence_transformers", "transformers", "optimum")
print(json.dumps({
    "light": embedder.light,
    "dimensions": embedder.dimensions,
    "max_tokens": embedder.max_tokens,
    "vectors": [batch.vectors[0].tolist() for batch in alone],
    "counts": [batch.token_counts[0] for batch in alone],
    "truncated": [batch.truncated[0] for batch in alone],
    "chunk_tokens": chunks,
    "imported": sorted(name for name in heavy if name in sys.modules),
}))
"""


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export built and verified by a first, full start."""
    cache = tmp_path_factory.mktemp("light-cache")
    first = LocalEmbedder(MODEL, backend=BACKEND, cache_dir=cache)
    assert not first.light  # nothing was cached: the full path built the export
    return cache


def _manifest(cache: Path) -> Path:
    location = light.graph_location(cache, MODEL, BACKEND)
    assert location is not None  # this CPU has int8 kernels (the suite's machines do)
    folder, graph = location
    return folder / f"light-{Path(graph).stem}.json"


def _light_process(cache: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _LIGHT_PROCESS, str(cache), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _sentence_transformers_int8(cache: Path):  # type: ignore[no-untyped-def]
    """sentence-transformers' own model on the same cached int8 graph."""
    from sentence_transformers import SentenceTransformer

    folder = onnx_cache.export_dir(cache / "onnx", MODEL)
    file_name = onnx_cache.int8_file(onnx_cache.quantization_target() or "")
    options = {
        "file_name": file_name,
        "session_options": light.session_options(os.cpu_count() or 1),
    }
    return SentenceTransformer(
        str(folder), backend="onnx", local_files_only=True, model_kwargs=options
    )


def test_a_verified_export_is_served_without_torch_as_sentence_transformers_embeds(
    cache_dir: Path, local_embedder: LocalEmbedder
) -> None:
    served = _light_process(cache_dir)
    assert served["light"] is True
    assert served["imported"] == []
    assert (served["dimensions"], served["max_tokens"]) == (384, 256)
    reference = _sentence_transformers_int8(cache_dir)
    vectors = np.array(served["vectors"], dtype=np.float32)
    for text, vector in zip(TEXTS, vectors, strict=True):
        expected = reference.encode([text], normalize_embeddings=True)[0]
        assert float(vector @ expected) >= 0.9999, text
    # And the model's own fp32 vectors (torch), within int8's error.
    fp32 = local_embedder.embed(TEXTS).vectors
    assert (vectors * fp32).sum(axis=1).min() >= 0.97
    hf_counts = [len(ids) for ids in reference.tokenizer(TEXTS)["input_ids"]]
    assert served["counts"] == hf_counts and hf_counts[-1] == 302
    assert served["truncated"] == [count > 256 for count in hf_counts]
    hf_chunk_tokens = reference.tokenizer.encode(
        TEXTS[1], add_special_tokens=False, split_special_tokens=True
    )
    assert served["chunk_tokens"] == hf_chunk_tokens


def test_chunks_are_the_same_as_with_transformers_tokenizer(
    cache_dir: Path, local_embedder: LocalEmbedder
) -> None:
    """Chunk boundaries must not move when the light runtime counts tokens: unchanged
    documents keep their chunks."""
    from transformers import AutoTokenizer

    served = LocalEmbedder(MODEL, backend=BACKEND, cache_dir=cache_dir)
    assert served.light
    text = "\n\n".join(
        f"Paragraph {i}: [CLS] mitochondria, naïve café 😀, and the cell cycle. " * (1 + i % 4)
        for i in range(30)
    )
    options = ChunkingOptions(max_tokens=40, overlap=5)
    chunks = split(text, served, options)
    assert len(chunks) > 10
    assert chunks == split(text, local_embedder, options)
    hf = AutoTokenizer.from_pretrained(str(local_embedder._model_dir), local_files_only=True)
    for chunk in chunks:
        expected = hf.encode(chunk, add_special_tokens=False, split_special_tokens=True)
        assert served.tokenizer.encode(chunk) == expected


def test_a_changed_tokenizer_or_a_stale_manifest_is_not_served_light(
    cache_dir: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(cache_dir, cache)
    manifest = _manifest(cache)
    assert LocalEmbedder(MODEL, backend=BACKEND, cache_dir=cache).light
    # EMBEDSEARCH_LIGHT_RUNTIME=0: the full path, whatever is cached.
    assert not LocalEmbedder(MODEL, backend=BACKEND, cache_dir=cache, light_runtime=False).light
    fields = json.loads(manifest.read_text())
    tokenizer = manifest.parent / fields["tokenizer"]
    tokenizer.write_text(tokenizer.read_text())  # same content, a new time: not what was checked
    reloaded = LocalEmbedder(MODEL, backend=BACKEND, cache_dir=cache)
    assert not reloaded.light  # the full path ran, checked again and wrote a new manifest
    assert LocalEmbedder(MODEL, backend=BACKEND, cache_dir=cache).light
    manifest.write_text(json.dumps({**fields, "model": "another-model"}))
    assert not LocalEmbedder(MODEL, backend=BACKEND, cache_dir=cache).light
    manifest.write_text(manifest.read_text()[:40])  # half a file
    assert not LocalEmbedder(MODEL, backend=BACKEND, cache_dir=cache).light
    assert LocalEmbedder(MODEL, backend=BACKEND, cache_dir=cache).light


def test_a_foreign_graph_under_the_models_name_is_rebuilt(
    cache_dir: Path, tmp_path: Path, local_embedder: LocalEmbedder
) -> None:
    """A graph that loads and runs but is not this model (its word embeddings shuffled, as
    another model's export would embed): the check against the model's torch vectors fails,
    the export is rebuilt, and only the rebuilt one is recorded for the light runtime."""
    import onnx
    from onnx import numpy_helper

    cache = tmp_path / "cache"
    shutil.copytree(cache_dir, cache)
    manifest = _manifest(cache)
    graph_file = manifest.parent / json.loads(manifest.read_text())["graph"]
    manifest.unlink()
    graph = onnx.load(str(graph_file))
    (embeddings,) = [
        i for i in graph.graph.initializer if i.name.endswith("word_embeddings.weight_quantized")
    ]
    values = numpy_helper.to_array(embeddings).copy()
    np.random.default_rng(0).shuffle(values)
    embeddings.CopyFrom(numpy_helper.from_array(values, embeddings.name))
    onnx.save(graph, str(graph_file))

    embedder = LocalEmbedder(MODEL, backend=BACKEND, cache_dir=cache)
    expected = local_embedder.embed(TEXTS[:3]).vectors
    assert (embedder.embed(TEXTS[:3]).vectors * expected).sum(axis=1).min() >= 0.97
    assert manifest.is_file()
    served = LocalEmbedder(MODEL, backend=BACKEND, cache_dir=cache)
    assert served.light
    assert (served.embed(TEXTS[:3]).vectors * expected).sum(axis=1).min() >= 0.97
