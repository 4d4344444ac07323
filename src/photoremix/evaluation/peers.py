"""Other colour-transfer methods the classic engine is measured against.

A peer is a callable ``(content_2k, reference) -> output``: content_2k is the content
already resized to the output size, reference is the reference at its own size; all are
(H, W, 3) uint8 sRGB and the output has content_2k's shape.

Peer libraries are optional and imported only when a peer is listed or run:
scikit-image (BSD) comes with the ``eval`` extra; color-matcher is GPL-3.0 and must never
become a dependency of the product, so it is installed only from
``benchmarks/requirements-peers.txt``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np

Peer = Callable[[np.ndarray, np.ndarray], np.ndarray]

PEERS_INSTALL_HINT = "pip install -r benchmarks/requirements-peers.txt"


def _to_uint8(image: np.ndarray) -> np.ndarray:
    # Both libraries may return floats on the 0..255 scale that overshoot it; clip, not
    # min-max normalise (color-matcher's Normalizer would stretch the contrast).
    if image.dtype == np.uint8:
        return image
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def match_histograms(content_2k: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-channel RGB histogram matching (``skimage.exposure.match_histograms``)."""
    from skimage.exposure import match_histograms as skimage_match_histograms

    return _to_uint8(skimage_match_histograms(content_2k, reference, channel_axis=-1))


def _color_matcher(method: str) -> Peer:
    def transfer(content_2k: np.ndarray, reference: np.ndarray) -> np.ndarray:
        from color_matcher import ColorMatcher

        # Floats on the 0..255 scale: with uint8 input its histogram step writes into a
        # uint8 array and truncates instead of rounding.
        result = ColorMatcher().transfer(
            src=content_2k.astype(np.float32), ref=reference.astype(np.float32), method=method
        )
        return _to_uint8(result.reshape(content_2k.shape))

    transfer.__name__ = f"color_matcher_{method}"
    transfer.__doc__ = f"color-matcher's {method!r} transfer (GPL-3.0, optional)."
    return transfer


# name -> (module that must be importable, peer)
_PEERS: dict[str, tuple[str, Peer]] = {
    "match_histograms": ("skimage", match_histograms),
    "cm-mkl": ("color_matcher", _color_matcher("mkl")),
    "cm-hm-mvgd-hm": ("color_matcher", _color_matcher("hm-mvgd-hm")),
}

PEER_NAMES: tuple[str, ...] = tuple(_PEERS)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def available_peers() -> dict[str, Peer]:
    """The peers whose library is installed, by name, in a fixed order."""
    return {name: peer for name, (module, peer) in _PEERS.items() if _installed(module)}


def unavailable_peers() -> dict[str, str]:
    """The peers whose library is missing, by name, with what to install."""
    return {
        name: f"needs the {module!r} package ({PEERS_INSTALL_HINT})"
        for name, (module, _) in _PEERS.items()
        if not _installed(module)
    }
