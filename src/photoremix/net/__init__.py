"""Network helpers for the HTTP service: fetching user-supplied image URLs safely."""

from photoremix.net.fetch import FetchError, FetchPolicy, fetch_url, non_public_kind

__all__ = ["FetchError", "FetchPolicy", "fetch_url", "non_public_kind"]
