"""Business rules over the persistence layer: accounts, API keys and prepaid billing."""
