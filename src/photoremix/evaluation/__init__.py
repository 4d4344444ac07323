"""Quality evaluation: metrics, peer methods and the ``photoremix eval`` harness.

Only the metrics are imported here; the harness and command import the engine and
imaging packages and are imported from their modules.
"""

from photoremix.evaluation.metrics import (
    FaceIdentity,
    OutputMetrics,
    evaluate_output,
    identity_scores,
    sliced_wasserstein_lab,
    structure_score,
    style_ratio,
    texture_ratio,
    texture_statistics,
)

__all__ = [
    "FaceIdentity",
    "OutputMetrics",
    "evaluate_output",
    "identity_scores",
    "sliced_wasserstein_lab",
    "structure_score",
    "style_ratio",
    "texture_ratio",
    "texture_statistics",
]
