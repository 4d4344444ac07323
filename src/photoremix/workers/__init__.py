"""Where engine work runs: a bounded pool of threads inside the service process."""

from photoremix.workers.pool import Place, PoolFull, WorkerPool

__all__ = ["Place", "PoolFull", "WorkerPool"]
