"""vcgate: verifiable-credential access control for AI model serving."""

__version__ = "0.1.0"
