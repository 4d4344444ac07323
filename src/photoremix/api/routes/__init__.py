"""HTTP routes: thin shells that translate between JSON and ``services``."""
