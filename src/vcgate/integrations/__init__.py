"""Adapters for model servers and gateways that load vcgate themselves (vLLM, Kong, LiteLLM).

Each module is a thin driver around :class:`~vcgate.gate.Gate`, configured through
:class:`~vcgate.assembly.GateConfig` because the host process, not the user's code, builds it.
"""
