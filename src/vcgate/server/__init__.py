"""The auth service behind ``vcgate serve`` (Envoy ext_authz HTTP + gRPC, NGINX auth_request,
Traefik ForwardAuth, token endpoint, metrics). Needs the ``server`` extra."""

from .authservice import AuthService, create_app

__all__ = ["AuthService", "create_app"]
