"""The agent side: answer vcgate challenges from ``httpx`` (and the OpenAI SDK) or ``requests``.

```python
from vcgate.client import Holder

holder = Holder.from_key_file("agent.key", credentials=["agent-access.jwt"])
client = httpx.Client(auth=holder.httpx_auth())
session = requests.Session(); session.auth = holder.requests_auth()
```

``httpx`` is an optional dependency (``pip install 'vcgate[client]'``); it is imported by
:meth:`Holder.httpx_auth`, not here.
"""

from .holder import Challenge, Holder, ProtocolError, parse_challenges

__all__ = ["Challenge", "Holder", "ProtocolError", "parse_challenges"]
