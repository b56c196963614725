"""The tail server: HTTP, dynamic batching, bounded queue, metrics, graceful shutdown."""

from privpart.runtime.server.app import TailConfig, TailService, build_tail_app, tail_service
from privpart.runtime.server.batcher import BatchConfig, Batcher

__all__ = ["BatchConfig", "Batcher", "TailConfig", "TailService", "build_tail_app", "tail_service"]
