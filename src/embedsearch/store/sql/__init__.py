"""Every SQL statement of the project, split by the store module that runs it.

    schema.py     migrations: the version table, the lock, each version's DDL
    registry.py   the collection registry (embedsearch_collections)
    ddl.py        chunk tables and their ANN indexes: the DDL that sharding will change
    chunks.py     chunk writes (INSERT, binary COPY) and reads
    search.py     dense, lexical and hybrid search, and the per-transaction index settings
    documents.py  documents and their chunks
    indexes.py    index administration: catalog reads, build locks and progress
    metrics.py    the catalog's estimates that /metrics reports
    replicas.py   read replicas' health readings and read-your-writes positions

Identifiers go through sql.Identifier, values are parameters.
"""
