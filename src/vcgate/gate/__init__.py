"""The request pipeline: one framework-neutral path from a request to an answer.

See ``docs/architecture.md`` for where each concern lives.
"""

from .core import DEFAULT_TOKEN_PATH, GRANT_PREFIX, METADATA_PATH, Decision, Gate, PolicyState, RequestView

__all__ = ["DEFAULT_TOKEN_PATH", "GRANT_PREFIX", "METADATA_PATH", "Decision", "Gate", "PolicyState", "RequestView"]
