"""PostgreSQL storage; all SQL of the project lives in this package (text in store/sql/).

store.py        Store: opens the database, migrates it, hands out the parts below
database.py     connections: which one a statement uses (reads, writes, dedicated)
pool.py         a connection pool to one server (the primary, or a read replica)
replicas.py     read replicas: which server serves a read; replica_health.py their health
lsn.py          WAL positions, as read-your-writes hands them out and takes them back
migrations.py   numbered schema migrations and the schema version
registry.py     the collection registry, the only source of a collection's table
ddl.py          the one place that issues DDL for chunk tables and their indexes
collection.py   a handle on one collection: chunk writes, reads and search
documents.py    a collection's documents, replaced atomically
indexes.py      ANN index builds, deferral and health readings
group_commit.py concurrent single-chunk writes sharing one transaction
embedded.py     the embedded PostgreSQL server
"""

from embedsearch.store.collection import CollectionHandle
from embedsearch.store.records import ChunkRows, SearchHit
from embedsearch.store.store import Store

__all__ = ["ChunkRows", "CollectionHandle", "SearchHit", "Store"]
