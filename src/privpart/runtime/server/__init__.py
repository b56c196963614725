"""The tail server: HTTP, dynamic batching, bounded queue, metrics, limits, graceful shutdown."""

from privpart.runtime.server.app import build_tail_app, tail_service
from privpart.runtime.server.batcher import BatchConfig, Batcher
from privpart.runtime.server.limits import ServerLimits
from privpart.runtime.server.service import TailConfig, TailService

__all__ = [
    "BatchConfig",
    "Batcher",
    "ServerLimits",
    "TailConfig",
    "TailService",
    "build_tail_app",
    "tail_service",
]
