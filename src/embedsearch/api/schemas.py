"""Request and response bodies. Field names follow the brief's contract (camelCase)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from embedsearch.core.constants import (
    COLLECTION_NAME_PATTERN,
    DEFAULT_CONVEX_ALPHA,
    DEFAULT_FUSION,
    DEFAULT_HNSW_EF_CONSTRUCTION,
    DEFAULT_HNSW_M,
    DEFAULT_LIMIT,
    DEFAULT_MMR_FETCH_K,
    DEFAULT_MMR_LAMBDA,
    DEFAULT_RRF_K,
    DEFAULT_TEXT_CONFIG,
    HNSW_EF_CONSTRUCTION_RANGE,
    HNSW_M_RANGE,
    HNSW_MAX_EF_SEARCH,
    HYBRID_CANDIDATES,
    IVFFLAT_LISTS_RANGE,
    MAX_CHUNK_ID_CHARS,
    MAX_DOCUMENT_ID_CHARS,
    MAX_LIMIT,
    MAX_RRF_K,
    MAX_SHARDS,
)
from embedsearch.core.distance import Distance
from embedsearch.core.fusion import Fusion, FusionMethod
from embedsearch.core.search_mode import SearchMode
from embedsearch.core.vector_index import IndexSpec, IndexType, Storage

CollectionField = Field(
    default=None, description="Collection name (default: the brief's chunk_embeddings)."
)


class RequestModel(BaseModel):
    """A request body: strict types (no "5" for 5, true for 1, 5 for "5"; an int still does
    for a float) and no unknown fields (a typo such as "distnce" must not pass as the default).
    Enum fields say strict=False: FastAPI validates parsed JSON in python mode, where strict
    takes only Enum instances, never the strings JSON has (lax takes exactly their values)."""

    model_config = ConfigDict(strict=True, extra="forbid")


class ChunkItem(RequestModel):
    chunkId: str = Field(min_length=1, max_length=MAX_CHUNK_ID_CHARS, examples=["chunk-123"])
    text: str = Field(min_length=1, examples=["Machine learning basics"])
    metadata: dict[str, Any] | None = Field(default=None, description="Any JSON object.")


class EmbedRequest(ChunkItem):
    collection: str | None = CollectionField


class EmbedResponse(BaseModel):
    chunkId: str
    dimensions: int
    model: str
    created: bool = Field(description="True if the chunk was new, False if it was replaced.")
    truncated: bool = Field(description="True if the text was cut to the model's window.")
    tokens: int | None = Field(description="Tokens in the text before truncation, if known.")


class EmbedBatchRequest(RequestModel):
    items: list[ChunkItem] = Field(
        min_length=1, description="Chunks to embed and store, all or none."
    )
    collection: str | None = CollectionField


class EmbedBatchResponse(BaseModel):
    count: int
    dimensions: int
    model: str
    chunkIds: list[str]
    created: int = Field(description="How many chunks were new (the rest replaced existing ones).")
    truncated: list[str] = Field(description="chunkIds whose text was cut to the model's window.")


class SearchRequest(RequestModel):
    query: str = Field(min_length=1, examples=["explain neural networks"])
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    distance: Distance | None = Field(
        default=None,
        strict=False,
        description="cosine, l2 or inner_product (default: the collection's, cosine)",
    )
    collection: str | None = CollectionField
    filter: dict[str, Any] | None = Field(
        default=None,
        description='Metadata filter, e.g. {"lang": "en", "year": {"$gte": 2020}}',
    )


class MmrRequest(RequestModel):
    model_config = ConfigDict(populate_by_name=True)  # merged with RequestModel's

    lambda_: float = Field(
        default=DEFAULT_MMR_LAMBDA,
        ge=0.0,
        le=1.0,
        alias="lambda",
        description="1: relevance only; 0: novelty only",
    )
    fetchK: int = Field(
        default=DEFAULT_MMR_FETCH_K, ge=1, le=MAX_LIMIT, description="Candidates to re-rank."
    )


class FusionRequest(RequestModel):
    method: FusionMethod = Field(
        default=FusionMethod(DEFAULT_FUSION),
        strict=False,
        description="rrf (Reciprocal Rank Fusion of the ranks) or convex (alpha * dense + "
        "(1 - alpha) * lexical over per-query min-max normalized scores)",
    )
    k: int = Field(default=DEFAULT_RRF_K, ge=1, le=MAX_RRF_K, description="rrf: k")
    alpha: float = Field(
        default=DEFAULT_CONVEX_ALPHA, ge=0.0, le=1.0, description="convex: the dense weight"
    )

    def fusion(self) -> Fusion:
        return Fusion(self.method, k=self.k, alpha=self.alpha)


class SearchAnyRequest(SearchRequest):
    mode: SearchMode = Field(
        default=SearchMode.DENSE,
        strict=False,
        description="dense (vector distance), lexical (BM25), hybrid (a fusion of both)",
    )
    fusion: FusionRequest | None = Field(
        default=None,
        description="hybrid: how the two lists are fused (default: the collection's, else "
        f"{DEFAULT_FUSION} with alpha {DEFAULT_CONVEX_ALPHA})",
    )
    candidates: int | None = Field(
        default=None,
        ge=1,
        le=MAX_LIMIT,
        description="hybrid: length of each list before fusion (default: max(4 x limit, "
        f"{HYBRID_CANDIDATES}))",
    )
    rrfK: int | None = Field(
        default=None,
        ge=1,
        le=MAX_RRF_K,
        description="hybrid: shorthand for fusion {method: rrf, k: rrfK}",
    )
    mmr: MmrRequest | None = Field(
        default=None, description="Re-rank for diversity with Maximal Marginal Relevance."
    )
    exact: bool = Field(
        default=False, description="dense: scan every row (exact, ground truth) instead of HNSW"
    )
    efSearch: int | None = Field(
        default=None,
        ge=1,
        le=HNSW_MAX_EF_SEARCH,
        description="dense: HNSW candidate list (recall vs speed)",
    )
    probes: int | None = Field(
        default=None,
        ge=1,
        le=IVFFLAT_LISTS_RANGE[1],
        description="dense: IVFFlat lists to scan (default: set when the index was built)",
    )


class SearchResult(BaseModel):
    chunkId: str
    documentId: str | None = None
    score: float = Field(
        description="dense (and /search/pgvector): the pgvector distance for the requested "
        "metric, smaller is closer, results smallest first. lexical: BM25, larger is better. "
        "hybrid: the fused score (RRF sum or convex combination), larger is better."
    )
    text: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchResponse(BaseModel):
    results: list[SearchResult]
    mode: SearchMode = SearchMode.DENSE
    collection: str
    model: str
    distance: Distance
    queryTruncated: bool


class IndexRequest(RequestModel):
    type: IndexType = Field(default=IndexType.HNSW, strict=False)
    m: int = Field(
        default=DEFAULT_HNSW_M,
        ge=HNSW_M_RANGE[0],
        le=HNSW_M_RANGE[1],
        description="HNSW: links per node",
    )
    efConstruction: int = Field(
        default=DEFAULT_HNSW_EF_CONSTRUCTION,
        ge=HNSW_EF_CONSTRUCTION_RANGE[0],
        le=HNSW_EF_CONSTRUCTION_RANGE[1],
        description="HNSW: build beam width",
    )
    lists: int | None = Field(
        default=None,
        ge=IVFFLAT_LISTS_RANGE[0],
        le=IVFFLAT_LISTS_RANGE[1],
        description="IVFFlat: clusters (default: from the row count)",
    )

    def spec(self) -> IndexSpec:
        return IndexSpec(self.type, self.m, self.efConstruction, self.lists)


class ShardingRequest(RequestModel):
    shards: int = Field(
        ge=1,
        le=MAX_SHARDS,
        description="Citus shards the collection's chunks are hash-distributed into (by "
        "document id, or chunk id for chunks of no document).",
    )


class ShardingPublic(BaseModel):
    shards: int
    distributionColumn: str = Field(
        description="shard_key: the chunk id without its trailing #n, i.e. the document id."
    )


class CollectionCreate(RequestModel):
    name: str = Field(examples=["papers"], description=f"^{COLLECTION_NAME_PATTERN}$")
    embedder: str | None = Field(
        default=None, examples=["local:all-MiniLM-L6-v2", "openai:text-embedding-3-small"]
    )
    dimensions: int | None = Field(default=None, ge=1, le=16000)
    distance: Distance = Field(default=Distance.COSINE, strict=False)
    storage: Storage = Field(
        default=Storage.VECTOR,
        strict=False,
        description="vector (float32) or halfvec (float16: half the size; indexes up to 4000 dims)",
    )
    normalize: bool = Field(
        default=True,
        description="Store unit vectors (one cosine index serves every distance). false keeps "
        "the model's raw vectors: the index follows `distance`, other distances scan exactly.",
    )
    index: IndexRequest | None = Field(
        default=None, description="hnsw (default, built as rows arrive) or none"
    )
    textConfig: str = Field(
        default=DEFAULT_TEXT_CONFIG,
        description="PostgreSQL text search configuration for lexical search (stemming, stop "
        "words): english, simple, german, french, ...",
    )
    sharding: ShardingRequest | None = Field(
        default=None,
        description="Distribute the collection over a Citus cluster (EMBEDSEARCH_DATABASE_URL "
        "a coordinator); 422 on a database without Citus.",
    )


class CollectionUpdate(RequestModel):
    """PATCH /collections/{name}: only the fields given change (a misspelt field must not
    pass as "no change")."""

    fusion: FusionRequest | None = Field(
        default=None,
        description="Hybrid search's default fusion, used when a request gives none; null "
        f"clears it (then {DEFAULT_FUSION} with alpha {DEFAULT_CONVEX_ALPHA}). "
        "`embedsearch eval --sweep` finds the best one for a collection's own judgments.",
    )


class CollectionPublic(BaseModel):
    name: str
    model: str
    dimensions: int
    embedder: str | None
    distance: Distance
    storage: Storage
    normalized: bool
    textConfig: str
    fusion: dict[str, Any] | None = Field(description="Hybrid search's stored default fusion.")
    sharding: ShardingPublic | None = Field(
        default=None, description="Citus sharding (null: a plain table)."
    )
    count: int
    createdAt: datetime


class IndexBuildPublic(BaseModel):
    phase: str
    blocksDone: int
    blocksTotal: int
    tuplesDone: int
    tuplesTotal: int


class RecallEstimate(BaseModel):
    k: int
    sample: int = Field(description="Stored vectors used as queries.")
    recall: float = Field(description="Mean overlap of the ANN top-k with the exact top-k.")


class IndexPublic(BaseModel):
    collection: str
    type: IndexType
    options: dict[str, int] = Field(description='e.g. {"m": 16, "ef_construction": 64}')
    opclass: str | None
    storage: Storage
    dimensions: int
    rows: int
    indexRows: int | None = Field(description="Rows present when the index was last built.")
    indexBytes: int
    tableBytes: int
    valid: bool
    efSearch: int | None
    probes: int | None
    builtAt: datetime | None
    recall: RecallEstimate | None
    advice: list[str]
    build: IndexBuildPublic | None = Field(description="A build running now, with its progress.")


class CollectionList(BaseModel):
    collections: list[CollectionPublic]


class AliasSet(RequestModel):
    name: str = Field(examples=["papers"], description=f"^{COLLECTION_NAME_PATTERN}$")
    collection: str = Field(examples=["papers_v2"], description="The collection it names.")


class AliasPublic(BaseModel):
    name: str
    collection: str
    updatedAt: datetime


class AliasSetResponse(AliasPublic):
    previous: str | None = Field(description="The collection the alias named before, if any.")


class AliasList(BaseModel):
    aliases: list[AliasPublic]


class AliasDeleted(BaseModel):
    name: str
    collection: str = Field(description="The collection it named (kept).")


class Chunking(RequestModel):
    maxTokens: int | None = Field(default=None, ge=1, description="Default: the model's window.")
    overlap: int = Field(default=0, ge=0, description="Tokens shared by neighbouring chunks.")


class DocumentCreate(RequestModel):
    documentId: str = Field(
        min_length=1, max_length=MAX_DOCUMENT_ID_CHARS, examples=["handbook.md"]
    )
    text: str = Field(min_length=1)
    metadata: dict[str, Any] | None = None
    collection: str | None = CollectionField
    chunking: Chunking | None = None


class DocumentStored(BaseModel):
    documentId: str
    collection: str
    status: Literal["new", "updated", "unchanged"]
    chunkIds: list[str] = Field(description="Empty when the document was unchanged.")
    embedded: int = Field(description="Chunks sent to the model (unchanged chunks are not).")


class DocumentPublic(BaseModel):
    documentId: str
    collection: str
    metadata: dict[str, Any]
    chunkCount: int
    chunkIds: list[str]
    createdAt: datetime
    updatedAt: datetime


class ChunkPublic(BaseModel):
    chunkId: str
    collection: str
    text: str | None
    metadata: dict[str, Any]
    model: str
    dimensions: int
    documentId: str | None
    createdAt: datetime
    updatedAt: datetime


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


# For the OpenAPI docs of endpoints that take input.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 409, 413, 415, 422, 502, 503)
}


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    status: Literal["ready"]
    model: str
    dimensions: int
    pgvector: str


# The OpenAI embeddings protocol (https://platform.openai.com/docs/api-reference/embeddings).
class OpenAIEmbeddingsRequest(RequestModel):
    """Every field the official SDK sends for embeddings.create (openai 3.51: model, input,
    user, dimensions, encoding_format); others, e.g. through its extra_body, are refused as
    unknown, as OpenAI's own API refuses unrecognized arguments."""

    model: str
    input: str | list[str] = Field(description="A string or a list of strings.")
    dimensions: int | None = Field(default=None, ge=1)
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage
