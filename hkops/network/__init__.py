"""The core network as hkops sees it: an HLR/HSS simulator, its MML provisioning protocol
and the provisioning client (DOMAIN.md section 7).

    from hkops.network import Simulator, InProcessTransport, ProvisioningClient
    client = ProvisioningClient(InProcessTransport(Simulator()))
    client.add_subscriber("13800138000", "460001234567890", ki, opc)

Over TCP: ``serve(port, data_dir)`` in its own process (``hkops hlr serve``) and
``ProvisioningClient(TcpTransport(host, port))``.
"""

from hkops.network.client import (
    ProvisioningClient,
    connect,
    SubscriberRecord,
    add_sub,
    mod_imsi,
    mod_odb,
    new_req,
    rmv_sub,
)
from hkops.network.errors import (
    ConnectionLost,
    ProvisioningError,
    ProvisioningRefused,
    ProvisioningUnavailable,
    ReplyTimeout,
    TransportError,
)
from hkops.network.protocol import BarringReason, Reply, ResultCode
from hkops.network.transport import InProcessTransport, TcpTransport, Transport

__all__ = [
    "DEFAULT_PORT", "BackgroundServer", "BarringReason", "ConnectionLost", "Faults", "InProcessTransport",
    "ProvisioningClient", "ProvisioningError", "ProvisioningRefused", "ProvisioningUnavailable", "Reply",
    "ReplyTimeout", "ResultCode", "Simulator", "SubscriberRecord", "TcpTransport", "Transport", "TransportError",
    "add_sub", "connect", "mod_imsi", "mod_odb", "new_req", "rmv_sub", "serve",
]

_SIMULATOR_NAMES = {"DEFAULT_PORT", "BackgroundServer", "Faults", "Simulator", "serve"}


def __getattr__(name: str):
    # Imported on first use, so that ``python -m hkops.network.simulator`` runs the module once.
    if name in _SIMULATOR_NAMES:
        from hkops.network import simulator

        return getattr(simulator, name)
    raise AttributeError(f"module 'hkops.network' has no attribute {name!r}")
