"""Sync server and client: barriers and small data exchange between hosts.

    master host:  with SyncServer("0.0.0.0", 0, secret) as srv: ... srv.port
    every host:   with SyncData(master, hostid, hosts, session, port=port,
                                secret=secret) as s:
                      s.sync({"port": 5200}, timeout=60) -> {hostid: data, ...}
                      s.barrier("ready", timeout=60)
                      s.abort("reason")  # peers raise SyncAborted at once

Semantics: host ids are the strings the controller assigns (never peer
addresses); data is any JSON value (tuples arrive as lists, dict keys as
strings; at most 100 levels deep, 1 MiB per frame).  Untagged sync() calls are
numbered per SyncData, so every host must make the same sequence of them.  A
timeout, an abort, or a connection lost before close() ends the session for
every host at once (SyncAborted names the host, the reason and the kind:
"failed", "interrupted" for a host stopped by a signal, "lost" when the
server lost a host's connection); hosts that join later get the same
SyncAborted.  Close every SyncData (or use ``with``).

Handshake (details in `wire`): hello (client nonce) -> welcome (server nonce)
-> the client's first frame under the connection key, which covers both
nonces.  Only that frame authenticates a connection: a replayed hello is closed
by the server's handshake deadline (`handshake_timeout`, 5 s) with the silent
and the incomplete connections.

Modules: `wire` (frames, MACs, secrets), `session` (barrier bookkeeping, no
I/O), `server` (selector loop in a thread), `client` (SyncData).
Errors (multihost_migration.errors): SyncError > SyncTimeout >
SyncBarrierTimeout / SyncConnectTimeout; SyncAborted; SyncProtocolError.
"""

from multihost_migration.errors import (SyncAborted, SyncBarrierTimeout, SyncConnectTimeout,
                                        SyncError, SyncProtocolError, SyncTimeout)
from multihost_migration.sync.client import SyncData
from multihost_migration.sync.server import DEFAULT_PORT, SyncServer
from multihost_migration.sync.wire import SECRET_ENV, coerce_secret, new_secret

__all__ = [
    "DEFAULT_PORT", "SECRET_ENV", "SyncAborted", "SyncBarrierTimeout", "SyncConnectTimeout",
    "SyncData", "SyncError", "SyncProtocolError", "SyncServer", "SyncTimeout",
    "coerce_secret", "new_secret",
]
