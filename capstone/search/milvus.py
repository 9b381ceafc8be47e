"""A Milvus collection behind :meth:`ImageDatabase.query`: search past one process, or one machine.

``ann.use_index(db, "milvus", uri=...)`` copies the database's embeddings into a Milvus collection
(primary key: the database row, one ``FLOAT_VECTOR`` field, cosine metric) and answers every query
there, through ``pymilvus``. The same code talks to

- **Milvus Lite** for a local path ending in ``.db`` (``pip install "pymilvus[milvus-lite]"``): an
  embedded engine, pure Python, keeping its data in that folder and answering on 127.0.0.1 from a
  thread of this process. One process per ``.db``; made for tests and prototypes (at a million
  rows it spends about a second per query scanning its rows in Python: see the README).
- **a Milvus server or cluster** for an ``http://``/``https://`` URI (``$CAPSTONE_MILVUS_TOKEN``
  holds ``user:password`` or an API key when it asks for one): many processes and machines answer
  from one collection.

Without a URI, ``$CAPSTONE_MILVUS_URI`` is used, else a temporary Milvus Lite folder that
:meth:`MilvusIndex.close` (or the end of the process) deletes. A collection that already holds
exactly these embeddings (same fingerprint and count) is used as it is, so a second server
pointed at the same collection starts at once; one holding anything else is replaced.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
import weakref
from pathlib import Path

import numpy as np

from capstone.course.database import check_count
from capstone.search.index import BaseIndex

URI_VARIABLE, TOKEN_VARIABLE = "CAPSTONE_MILVUS_URI", "CAPSTONE_MILVUS_TOKEN"
MAX_RESULTS = 16_384  # Milvus's largest top-k per query
INSERT_ROWS = 10_000  # rows per insert request (8 MB at 200-d, well under gRPC's 256 MB)
_OPEN_LITE: dict = {}  # Milvus Lite path -> indexes of this process using its server
FINGERPRINT = "capstone.fingerprint"  # collection property: which embeddings it holds
INDEX_TYPES = ("HNSW", "IVF_FLAT", "FLAT", "AUTOINDEX")  # what Milvus Lite and servers both build


class MilvusError(RuntimeError):
    """Milvus could not be reached or opened; the message says what to do."""


def _pymilvus():
    try:
        import pymilvus
    except ImportError:
        raise ImportError('the milvus index needs pymilvus: pip install "pymilvus[milvus-lite]" '
                          "(or pip install -e '.[milvus]')") from None
    return pymilvus


def fingerprint(embeddings: np.ndarray) -> str:
    """A short hash of the rows (shape and bytes): what a reused collection must hold."""
    digest = hashlib.blake2b(str(embeddings.shape).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(embeddings, dtype=np.float32).data)
    return digest.hexdigest()


class MilvusIndex(BaseIndex):
    """The database's rows in a Milvus collection, searched by cosine.

    Parameters
    ----------
    embeddings : array-like, shape (n, D)
        Unit rows; copied into the collection (the index keeps no reference to them).
    uri : str, optional
        A Milvus Lite path ending in ``.db``, or a server's ``http(s)://host:19530``; default
        ``$CAPSTONE_MILVUS_URI``, else a temporary Milvus Lite folder.
    collection : str
        The collection's name (letters, digits, ``_``): one per database on a shared server.
    index_type : {"HNSW", "IVF_FLAT", "FLAT", "AUTOINDEX"}
        The vector index Milvus builds; Milvus Lite builds these with FAISS.
    M, ef_construction, ef_search : int
        HNSW's links per row, build and search candidate lists (as :class:`HNSWIndex`).
    nlist, nprobe : int, optional
        IVF_FLAT's cells (default about ``sqrt(n)``) and cells searched per query.
    connect_timeout : float
        Seconds to wait for a server before giving up.
    """

    kind = "milvus"

    def __init__(self, embeddings, uri=None, collection: str = "capstone_images",
                 index_type: str = "HNSW", M: int = 16, ef_construction: int = 80,
                 ef_search: int = 128, nlist=None, nprobe: int = 32,
                 connect_timeout: float = 10.0):
        super().__init__(embeddings)  # an empty matrix is refused there
        if index_type not in INDEX_TYPES:
            raise ValueError(f"index_type must be one of {', '.join(INDEX_TYPES)}, got "
                             f"{index_type!r}")
        if not (isinstance(collection, str) and collection[:1].isalpha()
                and collection.replace("_", "").isalnum() and collection.isascii()):
            raise ValueError(f"a Milvus collection name is letters, digits and _, starting with a "
                             f"letter; got {collection!r}")
        self.collection, self.index_type = collection, index_type
        self.M, self.ef_construction, self.ef_search = (
            check_count(M, "M"), check_count(ef_construction, "ef_construction"),
            check_count(ef_search, "ef_search"))
        self.nlist = check_count(nlist if nlist is not None else max(1, round(self.n ** 0.5)),
                                  "nlist")
        self.nprobe = check_count(nprobe, "nprobe")
        self.uri, temporary = self._resolve_uri(uri)
        try:
            self.client = _connect(self.uri, float(connect_timeout))
        except Exception:
            if temporary is not None:
                shutil.rmtree(temporary, ignore_errors=True)
            raise
        local = self.uri.endswith(".db")
        if local:
            _OPEN_LITE[self.uri] = _OPEN_LITE.get(self.uri, 0) + 1
        self._finalizer = weakref.finalize(self, _close, self.client,
                                           self.uri if local else None, temporary)
        self.reused, self.seconds = False, {}  # seconds: time to insert the rows and to index them
        try:
            self._fill(self.embeddings)
        except Exception:
            self.close()
            raise
        self.embeddings = None  # the rows live in Milvus now

    @staticmethod
    def _resolve_uri(uri):
        """``(uri, temporary folder or None)``; a local ``.db`` folder's parent is created."""
        uri = uri or os.environ.get(URI_VARIABLE) or None
        temporary = None
        if uri is None:
            temporary = tempfile.mkdtemp(prefix="capstone-milvus-")
            uri = os.path.join(temporary, "images.db")
        uri = str(uri)
        if "://" not in uri and not uri.startswith("unix:"):
            if not uri.endswith(".db"):
                raise ValueError(f"a Milvus URI is a Milvus Lite path ending in .db or a server's "
                                 f"http://host:19530, got {uri!r}")
            uri = str(Path(uri).expanduser().resolve())
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        return uri, temporary

    def _fill(self, embeddings: np.ndarray) -> None:
        """Use the collection if it holds these rows; else (re)create, insert and index it."""
        client, name = self.client, self.collection
        wanted = fingerprint(embeddings)
        if client.has_collection(name):
            properties = client.describe_collection(name).get("properties", {})
            if (properties.get(FINGERPRINT) == wanted
                    and int(client.get_collection_stats(name)["row_count"]) == self.n):
                client.load_collection(name)
                self.reused = True
                return
            client.drop_collection(name)
        pymilvus = _pymilvus()
        schema = pymilvus.MilvusClient.create_schema(auto_id=False)
        schema.add_field("row", pymilvus.DataType.INT64, is_primary=True)
        schema.add_field("embedding", pymilvus.DataType.FLOAT_VECTOR, dim=self.dim)
        # Strong: an image added is found by the very next query, on a server too
        client.create_collection(name, schema=schema, consistency_level="Strong",
                                 properties={FINGERPRINT: wanted})
        started = time.perf_counter()
        self._insert(embeddings, 0)
        self.seconds["insert"], started = time.perf_counter() - started, time.perf_counter()
        index = client.prepare_index_params()
        build = self._index_params()
        # pymilvus 3 sends the settings one by one; Milvus Lite 3.2 reads them only from a JSON
        # "params" entry, which Milvus servers read too: send both
        index.add_index(field_name="embedding", index_type=self.index_type, metric_type="COSINE",
                        params={**build, "params": build})
        local = self.uri.endswith(".db")
        # waiting for a build asks for AllocTimestamp, which Milvus Lite lacks (it builds on load)
        client.create_index(name, index, sync=not local)
        client.load_collection(name)
        self.seconds["index"] = time.perf_counter() - started

    def _insert(self, embeddings: np.ndarray, first_row: int) -> None:
        for start in range(0, len(embeddings), INSERT_ROWS):
            block = embeddings[start : start + INSERT_ROWS]
            self.client.insert(self.collection, [
                {"row": first_row + start + i, "embedding": vector} for i, vector in enumerate(block)
            ])
        # sealed into segments, which Milvus indexes; Milvus Lite otherwise scans its unsealed
        # rows in Python on every query (1.6 s a query at 20,000 rows)
        self.client.flush(self.collection)

    def _index_params(self) -> dict:
        if self.index_type == "HNSW":
            return {"M": self.M, "efConstruction": self.ef_construction}
        return {"nlist": self.nlist} if self.index_type == "IVF_FLAT" else {}

    def _search_params(self, want: int) -> dict:
        if self.index_type == "HNSW":
            return {"ef": max(self.ef_search, want)}  # Milvus asks for ef >= k
        return {"nprobe": min(self.nprobe, self.nlist)} if self.index_type == "IVF_FLAT" else {}

    @property
    def params(self) -> dict:
        chosen = {"uri": self.uri, "collection": self.collection, "index_type": self.index_type}
        if self.index_type == "HNSW":
            return {**chosen, "M": self.M, "ef_construction": self.ef_construction,
                    "ef_search": self.ef_search}
        return {**chosen, "nlist": self.nlist, "nprobe": self.nprobe}

    @property
    def nbytes(self) -> int:
        """Bytes this process holds for the index: none (the rows are in Milvus)."""
        return 0

    def disk_bytes(self) -> int | None:
        """Bytes of a Milvus Lite folder on disk (``None`` for a server)."""
        if not self.uri.endswith(".db"):
            return None
        return sum(path.stat().st_size for path in Path(self.uri).rglob("*") if path.is_file())

    def search(self, vector, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Approximately the ``min(k, n)`` rows with the largest cosine, best first.

        Returns
        -------
        (rows, scores) : int64 and float32 arrays; scores are the cosines Milvus computes
        """
        vector, k = self._query(vector), check_count(k)
        want = min(k, self.n)
        if want > MAX_RESULTS:
            raise ValueError(f"Milvus returns at most {MAX_RESULTS:,} results a query; ask for "
                             "fewer (k), or search exactly (kind='exact')")
        hits = self._hits(vector, want, self._search_params(want))
        if len(hits) < want and self.index_type == "HNSW":  # the graph search ran dry: widen it
            hits = self._hits(vector, want, {"ef": min(self.n, MAX_RESULTS)})
        rows = np.array([hit["row"] for hit in hits], dtype=np.int64)
        scores = np.array([hit["distance"] for hit in hits], dtype=np.float32)
        return rows, scores

    def _hits(self, vector, want: int, params: dict) -> list:
        return self.client.search(
            self.collection, data=[vector.tolist()], limit=want, output_fields=["row"],
            search_params={"metric_type": "COSINE", "params": params})[0]

    def add(self, rows, embeddings=None) -> None:
        """Insert new unit ``rows`` after the collection's; Milvus indexes them itself.

        ``embeddings`` (the database's whole matrix after the addition), when given, is
        fingerprinted so that a later process finds the collection up to date.
        """
        rows = np.ascontiguousarray(rows, dtype=np.float32).reshape(-1, self.dim)
        self._insert(rows, self.n)
        self.n += len(rows)
        wanted = fingerprint(embeddings) if embeddings is not None else ""
        self.client.alter_collection_properties(self.collection, properties={FINGERPRINT: wanted})

    def close(self) -> None:
        """Disconnect; stop this process's Milvus Lite server; delete a temporary folder."""
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _connect(uri: str, timeout: float):
    """A ``MilvusClient`` for ``uri``, or a one-line :class:`MilvusError` saying what to do."""
    pymilvus = _pymilvus()
    lite = logging.getLogger("milvus_lite.server_manager")  # logs a traceback where we say one line
    was_disabled, lite.disabled = lite.disabled, True
    try:
        # Milvus Lite's gRPC server answers pymilvus's 10 s keep-alive pings during a long call
        # (indexing a million rows) with "too_many_pings" and drops the connection: ping less
        options = {"grpc_options": {"grpc.keepalive_time_ms": 600_000}} if uri.endswith(".db") else {}
        return pymilvus.MilvusClient(uri=uri, token=os.environ.get(TOKEN_VARIABLE, ""),
                                     timeout=timeout, **options)
    except Exception as error:
        if uri.endswith(".db"):
            reason = ("another process has it open (Milvus Lite allows one process per .db); give "
                      "each process its own .db, or share a Milvus server "
                      f"({URI_VARIABLE}=http://HOST:19530)") if _locked(uri) else (
                      f"{getattr(error, 'message', error)}; check that it is a Milvus Lite folder "
                      'and that milvus-lite is installed (pip install "pymilvus[milvus-lite]")')
            raise MilvusError(f"cannot open the Milvus Lite database {uri}: {reason}") from None
        raise MilvusError(f"cannot reach Milvus at {uri} ({getattr(error, 'message', error)}); "
                          "check that the server runs and the URI and "
                          f"${TOKEN_VARIABLE} are right") from None
    finally:
        lite.disabled = was_disabled


def _locked(path: str) -> bool:
    """Whether another process holds the Milvus Lite folder's lock."""
    lock = Path(path) / "LOCK"
    if not lock.exists():
        return False
    import fcntl

    with open(lock, "rb") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(file, fcntl.LOCK_UN)
    return False


def _close(client, local_path, temporary) -> None:
    """Close the client, stop a Milvus Lite server this process runs, remove a temporary folder."""
    try:
        client.close()
    finally:
        if local_path is not None:
            _OPEN_LITE[local_path] -= 1
        if local_path is not None and not _OPEN_LITE[local_path]:  # the last one here: stop it
            del _OPEN_LITE[local_path]
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(local_path)
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
