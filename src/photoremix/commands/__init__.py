"""Click command groups registered on the ``photoremix`` CLI (thin shells over services)."""
