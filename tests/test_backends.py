"""Local backends: torch, ONNX and ONNX int8 give the same vectors (within quantization error);
ONNX exports are cached under the data dir, reused, and rebuilt when corrupt."""

from __future__ import annotations

import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from embedsearch.core.errors import InvalidInput
from embedsearch.embedders import onnx_cache, openvino_runtime
from embedsearch.embedders.cpu import FLAGS_ENV, cpu_flags, pick_backend
from embedsearch.embedders.light import session_options
from embedsearch.embedders.local import LocalEmbedder, token_batches
from embedsearch.embedders.onnx_direct import DirectOnnx
from embedsearch.embedders.worker import EmbeddingWorker

TEXTS = [
    "explain neural networks",
    "The mitochondria is the powerhouse of the cell, producing ATP through respiration.",
    "Simmer the tomatoes with garlic and olive oil for twenty minutes.",
]


@pytest.fixture(scope="module")
def onnx_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize(("backend", "min_cosine"), [("onnx", 0.9999), ("onnx-int8", 0.97)])
def test_onnx_backends_match_torch(
    local_embedder: LocalEmbedder, onnx_cache_dir: Path, backend: str, min_cosine: float
) -> None:
    embedder = LocalEmbedder("all-MiniLM-L6-v2", backend=backend, cache_dir=onnx_cache_dir)
    assert embedder.dimensions == 384
    got = embedder.embed(TEXTS)
    expected = local_embedder.embed(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(got.vectors, axis=1), 1.0, atol=1e-5)
    cosines = (got.vectors * expected.vectors).sum(axis=1)
    assert cosines.min() >= min_cosine, cosines
    assert got.token_counts == expected.token_counts
    long = embedder.embed([" ".join(["cell"] * 400)])
    assert long.truncated == [True] and long.token_counts == [402]
    exactly_full = embedder.embed([" ".join(["cell"] * 254)])  # + [CLS] and [SEP]: 256
    assert exactly_full.truncated == [False] and exactly_full.token_counts == [256]
    for text, vector in zip(TEXTS, got.vectors, strict=True):  # one text: its own path
        alone = embedder.embed([text])
        assert alone.token_counts == embedder.count_tokens([text])
        # int8 activations are quantized per call, so a batch's other texts move the scale.
        assert float(alone.vectors[0] @ vector) >= min_cosine


def test_export_is_cached_and_reused(onnx_cache_dir: Path) -> None:
    LocalEmbedder("all-MiniLM-L6-v2", backend="onnx", cache_dir=onnx_cache_dir)
    (model_file,) = onnx_cache_dir.glob("onnx/*/onnx/model.onnx")
    before = model_file.stat().st_mtime_ns
    LocalEmbedder("all-MiniLM-L6-v2", backend="onnx", cache_dir=onnx_cache_dir)
    assert model_file.stat().st_mtime_ns == before
    assert not list(Path(onnx_cache_dir).rglob("*.onnx.tmp"))


def test_int8_export_quantizes_the_fused_graph(onnx_cache_dir: Path) -> None:
    import onnx

    embedder = LocalEmbedder("all-MiniLM-L6-v2", backend="onnx-int8", cache_dir=onnx_cache_dir)
    assert embedder.backend == "onnx-int8"  # this machine has int8 kernels
    (int8,) = onnx_cache_dir.glob("onnx/*/onnx/model_int8_*.onnx")
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    # One quantized attention node per layer; Add + LayerNormalization left unfused.
    assert {"QAttention", "MatMulInteger", "LayerNormalization"} <= ops, ops
    assert "SkipLayerNormalization" not in ops
    assert not list(onnx_cache_dir.glob("onnx/*/onnx/model_fused.onnx"))  # the step is gone
    # sentence-transformers' pooling, traced in: one run gives the sentence vector.
    outputs = [output.name for output in onnx.load(str(int8)).graph.output]
    assert outputs == ["last_hidden_state", onnx_cache.SENTENCE_OUTPUT]
    assert not list(onnx_cache_dir.glob("onnx/*/onnx/pooling.onnx"))


# Case, accents, emoji, blanks, a text past the 256-token window, and lengths that pad a batch.
DIRECT_TEXTS = [
    *TEXTS,
    "",
    "   padded with spaces   ",
    "Ünïcode façade, naïve café — 東京 😀 MIXED Case",
    " ".join(["cell"] * 300),
]


@pytest.mark.parametrize(("backend", "pools_in_graph"), [("onnx", False), ("onnx-int8", True)])
def test_direct_onnx_calls_embed_as_sentence_transformers_does(
    onnx_cache_dir: Path, backend: str, pools_in_graph: bool
) -> None:
    """The served path (tokenizer, session and pooling called directly) against
    sentence-transformers' own encode() on the same cached graph: one text at a time, and a
    padded batch."""
    from sentence_transformers import SentenceTransformer

    embedder = LocalEmbedder("all-MiniLM-L6-v2", backend=backend, cache_dir=onnx_cache_dir)
    folder = onnx_cache.export_dir(onnx_cache_dir / "onnx", "all-MiniLM-L6-v2")
    file_name = onnx_cache.FP32_FILE
    if backend == "onnx-int8":
        file_name = onnx_cache.int8_file(onnx_cache.quantization_target() or "")
    # The same session settings: int8 results move with ONNX Runtime's fusions.
    options = {"file_name": file_name, "session_options": session_options(os.cpu_count() or 1)}
    reference = SentenceTransformer(
        str(folder), backend="onnx", local_files_only=True, model_kwargs=options
    )
    direct = DirectOnnx.attach(reference)
    assert direct is not None and direct.pools_in_graph == pools_in_graph

    def encode(texts: list[str]) -> np.ndarray:
        return reference.encode(texts, batch_size=len(texts), normalize_embeddings=True)

    batch, counts = direct.embed(DIRECT_TEXTS)
    np.testing.assert_allclose(batch, encode(DIRECT_TEXTS), atol=1e-5)
    assert counts[-1] == 256 and counts[3] == 2  # the window; [CLS] and [SEP] alone
    hf_counts = [len(ids) for ids in reference.tokenizer(DIRECT_TEXTS)["input_ids"]]
    assert direct.count_tokens(DIRECT_TEXTS) == hf_counts and hf_counts[-1] == 302
    for text in DIRECT_TEXTS:
        np.testing.assert_allclose(embedder.embed([text]).vectors, encode([text]), atol=1e-5)
    assert direct.agrees_with(encode)
    # The check can fail: a reference that cuts texts at 32 tokens differs on the long probe.
    reference.max_seq_length = 32
    assert not direct.agrees_with(encode)


def test_corrupt_or_missing_cache_is_rebuilt(tmp_path: Path, local_embedder: LocalEmbedder) -> None:
    LocalEmbedder("all-MiniLM-L6-v2", backend="onnx", cache_dir=tmp_path)
    (model_file,) = tmp_path.glob("onnx/*/onnx/model.onnx")
    model_file.write_bytes(b"not an onnx graph")
    rebuilt = LocalEmbedder("all-MiniLM-L6-v2", backend="onnx", cache_dir=tmp_path)
    assert model_file.stat().st_size > 1_000_000
    cosine = (rebuilt.embed(TEXTS[:1]).vectors * local_embedder.embed(TEXTS[:1]).vectors).sum()
    assert cosine > 0.9999
    model_file.unlink()
    LocalEmbedder("all-MiniLM-L6-v2", backend="onnx", cache_dir=tmp_path)
    assert model_file.is_file()


def test_a_new_export_removes_the_same_models_older_exports(tmp_path: Path) -> None:
    root = tmp_path / "onnx"
    old = root / "all-MiniLM-L6-v2-st5.6.0-ort1.31.0-fused1"
    (old / "onnx").mkdir(parents=True)
    (old / "onnx" / "model.onnx").write_bytes(b"an old export")
    (root / f"{old.name}.lock").touch()
    # Another model whose name starts like this one's, and another model's export: kept.
    kept = [root / "all-MiniLM-L6-v2-stable-st5.7.0-ort1.32.0-fused2", root / "e5-st5-ort1-fused1"]
    for folder in kept:
        folder.mkdir()
    LocalEmbedder("all-MiniLM-L6-v2", backend="onnx", cache_dir=tmp_path)
    current = onnx_cache.export_dir(root, "all-MiniLM-L6-v2")
    assert (current / onnx_cache.FP32_FILE).is_file()
    assert not old.exists() and not (root / f"{old.name}.lock").exists()
    assert all(folder.is_dir() for folder in kept)


@pytest.mark.parametrize(
    ("flags", "machine", "target"),
    [
        ({"avx2", "avx512f", "avx512_vnni"}, "x86_64", "avx512_vnni"),
        ({"avx2", "avx512f"}, "x86_64", "avx512"),
        ({"avx2", "sse4_2"}, "x86_64", "avx2"),
        ({"sse4_2"}, "x86_64", None),
        (set(), "aarch64", "arm64"),
    ],
)
def test_quantization_target_follows_cpu_features(
    flags: set[str], machine: str, target: str | None
) -> None:
    assert onnx_cache.quantization_target(flags, machine) == target


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(InvalidInput, match="backend must be one of"):
        LocalEmbedder("all-MiniLM-L6-v2", backend="tensorrt")


def test_unknown_local_model_is_refused_without_a_hub_download() -> None:
    with pytest.raises(InvalidInput, match="no hub downloads"):
        LocalEmbedder("intfloat/e5-small-v2")


def test_token_batches_group_by_length_within_the_budget() -> None:
    counts = [300, 12, 40, 256, 9, 500, 33, 12, 70, 256]
    batches = token_batches(counts, max_tokens=256, budget=512, max_size=3)
    assert sorted(i for batch in batches for i in batch) == list(range(len(counts)))
    for batch in batches:
        longest = max(min(counts[i], 256) for i in batch)
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * longest <= 512
    flat = [min(counts[i], 256) for batch in batches for i in batch]
    assert flat == sorted(flat)  # shortest first: batches hold texts of similar length


def test_token_batches_keep_short_texts_out_of_a_long_texts_padding() -> None:
    counts = [12] * 20 + [250] + [40] * 10
    batches = token_batches(counts, max_tokens=256, budget=100_000, max_size=64)
    by_length = {min(counts[i] for i in batch): len(batch) for batch in batches}
    # Three runs of similar length: no query is padded to 250 tokens, none split for nothing.
    assert by_length == {12: 20, 40: 10, 250: 1}
    assert token_batches([], max_tokens=256, budget=2048, max_size=64) == []


# --- openvino-bf16 and `auto` (issue 14) ---

AMX_HIDDEN = "fpu sse4_2 avx2 avx512f avx512_vnni"  # an AVX-512 VNNI CPU without AMX

_TOPICS = [
    "Vitamin D deficiency is associated with a higher risk of respiratory infections",
    "Statins lower LDL cholesterol and reduce cardiovascular events in older adults",
    "Gut microbiota composition changes after a course of broad-spectrum antibiotics",
    "CRISPR screens identify genes required for tumour growth in hypoxic conditions",
    "Sleep deprivation impairs working memory and increases daytime errors",
    "Mutations in BRCA1 raise the lifetime risk of breast and ovarian cancer",
    "Aerobic exercise improves insulin sensitivity in patients with type 2 diabetes",
    "Antibodies against the spike protein neutralise several viral variants",
]


def varied_texts(long: int, short: int) -> list[str]:
    """Abstract-length texts (~150-250 tokens) and claim-length ones: what the model embeds
    for documents and for queries (built here: the tests must not depend on a dataset)."""
    texts = []
    for i in range(long):
        topic = _TOPICS[i % len(_TOPICS)]
        sentences = [
            f"{topic}, according to study {i}.",
            "The cohort was followed for several years and outcomes were adjusted for age, sex,"
            " smoking status and body mass index.",
            f"Effect sizes differed between subgroups, with the strongest association in group"
            f" {i % 3 + 1}, and sensitivity analyses gave similar estimates.",
        ]
        texts.append(" ".join(sentences * (1 + i % 3)))
    texts += [_TOPICS[i % len(_TOPICS)].split(" in ")[0] for i in range(short)]
    return texts


@pytest.fixture(scope="module")
def bf16_embedder(onnx_cache_dir: Path) -> LocalEmbedder:
    """openvino-bf16, on whatever CPU runs the tests: OpenVINO runs bf16 on AMX or AVX-512
    BF16, and on other CPUs computes in fp32 behind the same calls."""
    return LocalEmbedder("all-MiniLM-L6-v2", backend="openvino-bf16", cache_dir=onnx_cache_dir)


def test_auto_picks_openvino_bf16_on_an_amx_cpu(
    bf16_embedder: LocalEmbedder, onnx_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FLAGS_ENV, f"{AMX_HIDDEN} amx_bf16 amx_int8 amx_tile")
    assert pick_backend()[0] == "openvino-bf16"
    embedder = LocalEmbedder("all-MiniLM-L6-v2", backend="auto", cache_dir=onnx_cache_dir)
    assert embedder.backend == "openvino-bf16"


def test_openvino_bf16_vectors_match_sentence_transformers(bf16_embedder: LocalEmbedder) -> None:
    """bf16 on the matrix units against sentence-transformers' own encode() (torch fp32)."""
    from sentence_transformers import SentenceTransformer

    from embedsearch.embedders.model_dir import resolve_model_dir

    texts = varied_texts(long=14, short=6)
    reference = SentenceTransformer(
        str(resolve_model_dir("all-MiniLM-L6-v2")[1]), device="cpu", local_files_only=True
    )
    expected = reference.encode(texts, normalize_embeddings=True)
    got = bf16_embedder.embed(texts)
    np.testing.assert_allclose(np.linalg.norm(got.vectors, axis=1), 1.0, atol=1e-4)
    cosines = (got.vectors * expected).sum(axis=1)
    assert cosines.min() >= 0.999, cosines
    hf_counts = [len(ids) for ids in reference.tokenizer(texts)["input_ids"]]
    assert got.token_counts == hf_counts


def test_openvino_bf16_gives_a_text_one_vector_whatever_its_batch(
    bf16_embedder: LocalEmbedder,
) -> None:
    """No per-call scales: a claim alone, or padded among long abstracts, gets the same vector."""
    texts = varied_texts(long=8, short=8)
    claims = texts[8:]
    batched = bf16_embedder._model_call(texts)[0]  # one call: claims padded to the longest
    for i, claim in enumerate(claims):
        alone = bf16_embedder.embed([claim]).vectors[0]
        assert float(alone @ batched[8 + i]) >= 0.9999
    shuffled = bf16_embedder._model_call(texts[::-1])[0][::-1]
    assert (shuffled * batched).sum(axis=1).min() >= 0.9999


@pytest.mark.parametrize(
    ("backend", "light_runtime"), [("auto", True), ("onnx-int8", True), ("onnx-int8", False)]
)
def test_the_default_backend_gives_a_text_one_vector_whatever_its_batch(
    onnx_cache_dir: Path, backend: str, light_runtime: bool
) -> None:
    """A text embedded alone, among others (long or short neighbours, any order, any padding),
    or in concurrent requests the model worker gathers, gets the same vector: int8's
    per-call activation scales would move it (cosine 0.987-0.993), so each text runs alone.
    onnx-int8 is also forced, so a CPU whose `auto` is bf16 still tests it."""

    def load() -> LocalEmbedder:
        return LocalEmbedder(
            "all-MiniLM-L6-v2",
            backend=backend,
            cache_dir=onnx_cache_dir,
            light_runtime=light_runtime,
        )

    embedder = load()
    if light_runtime and not embedder.light:  # the first load built the export
        embedder = load()
    assert embedder.light == light_runtime
    texts = varied_texts(long=10, short=10)
    abstracts, claims = texts[:10], texts[10:]
    alone = np.concatenate([embedder.embed([text]).vectors for text in texts])
    mixes = [
        embedder.embed(texts).vectors,
        embedder.embed(texts[::-1]).vectors[::-1],
        np.concatenate([embedder.embed(abstracts).vectors, embedder.embed(claims).vectors]),
        np.concatenate(
            [embedder.embed([a, c]).vectors for a, c in zip(abstracts, claims, strict=True)]
        )[[*range(0, 20, 2), *range(1, 20, 2)]],
    ]
    worker = EmbeddingWorker(embedder, batch_size=64, wait_ms=20)
    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(worker.embed, texts[i : i + 3]) for i in range(0, 20, 3)]
            mixes.append(np.concatenate([f.result().vectors for f in futures]))
    finally:
        worker.close()
    for mixed in mixes:
        cosines = np.einsum("ij,ij->i", alone, mixed)
        assert cosines.min() >= 0.9999, cosines
    assert embedder.one_text_per_call == (embedder.backend == "onnx-int8")


@pytest.mark.parametrize(
    ("flags", "machine", "backend"),
    [
        ({"avx2", "avx512f", "avx512_vnni", "amx_bf16", "amx_int8"}, "x86_64", "openvino-bf16"),
        ({"avx2", "avx512f", "avx512_vnni"}, "x86_64", "onnx-int8"),
        ({"avx2", "fma"}, "x86_64", "onnx-int8"),
        ({"sse4_2"}, "x86_64", "onnx"),
        ({"asimd"}, "aarch64", "onnx-int8"),
    ],
)
def test_auto_backend_follows_cpu_features(flags: set[str], machine: str, backend: str) -> None:
    assert pick_backend(flags, machine)[0] == backend


def test_cpu_flags_override_hides_amx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FLAGS_ENV, AMX_HIDDEN.replace(" ", ","))
    assert cpu_flags() == set(AMX_HIDDEN.split())
    assert pick_backend(machine="x86_64") == ("onnx-int8", "no AMX; int8 kernels for avx512_vnni")


def test_auto_without_amx_loads_onnx_int8(
    onnx_cache_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(FLAGS_ENV, AMX_HIDDEN)
    with caplog.at_level(logging.INFO, logger="embedsearch.embedders.local"):
        embedder = LocalEmbedder("all-MiniLM-L6-v2", backend="auto", cache_dir=onnx_cache_dir)
    assert embedder.backend == "onnx-int8"
    assert "backend auto: onnx-int8, because no AMX" in caplog.text


def test_openvino_bf16_that_cannot_run_falls_back_to_onnx_int8(
    onnx_cache_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(graph: Path, threads: int) -> None:
        raise RuntimeError("no CPU plugin")

    monkeypatch.setattr(openvino_runtime, "compile_graph", broken)
    embedder = LocalEmbedder("all-MiniLM-L6-v2", backend="openvino-bf16", cache_dir=onnx_cache_dir)
    assert embedder.backend == "onnx-int8"
    assert "openvino-bf16 not used (no CPU plugin); using the onnx-int8 backend" in caplog.text


def test_openvino_bf16_that_disagrees_is_not_used(
    tmp_path: Path,
    onnx_cache_dir: Path,
    bf16_embedder: LocalEmbedder,  # the export copied below exists
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A graph whose check fails (here: a threshold no bf16 vector meets) is never served."""
    shutil.copytree(onnx_cache_dir / "onnx", tmp_path / "onnx")
    original = openvino_runtime.MIN_COSINE
    openvino_runtime.MIN_COSINE = 1.01
    try:
        embedder = LocalEmbedder("all-MiniLM-L6-v2", backend="openvino-bf16", cache_dir=tmp_path)
    finally:
        openvino_runtime.MIN_COSINE = original
    assert embedder.backend == "onnx-int8"
    assert "sentence-transformers' vectors < 1.01); using the onnx-int8 backend" in caplog.text
    assert not list(tmp_path.glob(f"openvino/*/{openvino_runtime.VERIFIED_FILE}"))


def test_corrupt_or_missing_openvino_cache_is_rebuilt(
    tmp_path: Path,
    onnx_cache_dir: Path,
    bf16_embedder: LocalEmbedder,  # the export copied below exists
    local_embedder: LocalEmbedder,
) -> None:
    shutil.copytree(onnx_cache_dir / "onnx", tmp_path / "onnx")  # the fp32 export, not rebuilt
    expected = local_embedder.embed(TEXTS).vectors

    def load_and_check() -> None:
        embedder = LocalEmbedder("all-MiniLM-L6-v2", backend="openvino-bf16", cache_dir=tmp_path)
        assert embedder.backend == "openvino-bf16"
        assert (embedder.embed(TEXTS).vectors * expected).sum(axis=1).min() >= 0.999

    load_and_check()
    (folder,) = [path for path in tmp_path.glob("openvino/*") if path.is_dir()]
    graph = folder / openvino_runtime.POOLED_FILE
    blobs = list((folder / openvino_runtime.BLOB_DIR).glob("*.blob"))
    assert blobs and (folder / openvino_runtime.VERIFIED_FILE).is_file()
    for blob in blobs:  # truncated compiled blobs: OpenVINO compiles again
        blob.write_bytes(blob.read_bytes()[:1000])
    load_and_check()
    assert all(blob.stat().st_size > 1_000_000 for blob in blobs)
    graph.write_bytes(b"not an onnx graph")
    load_and_check()
    assert graph.stat().st_size > 1_000_000
    graph.unlink()
    load_and_check()
    assert graph.is_file()
