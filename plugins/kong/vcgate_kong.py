"""vcgate for Kong: verifiable-credential access control as a Kong Python plugin (kong-pdk).

kong-pdk's plugin server loads every ``.py`` file of its plugin directory; the file name is the
plugin name (``vcgate_kong``: not ``vcgate``, which would shadow the vcgate package in the
server's ``sys.modules``). It looks up ``Plugin``, ``Schema``, ``version`` and ``priority``;
all logic is in :mod:`vcgate.integrations.kong`. See ``plugins/kong/README.md``.

Run as its own server (Kong's "dedicated" plugin server style) with
``python vcgate_kong.py -p /usr/local/kong``.
"""

from vcgate.integrations.kong import PRIORITY, SCHEMA, VERSION, KongPlugin

Schema = SCHEMA
version = VERSION
priority = PRIORITY


class Plugin(KongPlugin):
    """``Plugin(config)``, one per plugin entry; phase ``access``."""


if __name__ == "__main__":
    from kong_pdk.cli import start_dedicated_server

    start_dedicated_server("vcgate_kong", Plugin, version, priority, Schema)
