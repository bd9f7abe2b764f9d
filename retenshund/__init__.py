"""retenshun: a self-hosted customer engagement daemon."""

__version__ = "0.1.0"
