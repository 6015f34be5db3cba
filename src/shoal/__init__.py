"""shoal: a distributed, concurrent, read-through key-value cache for asyncio.

The public API is exactly ``__all__``. Optional dependencies (database
drivers, msgpack, grpcio) are imported only when used, and so are the clients
(:class:`Client`, :class:`SyncClient`: their HTTP and gRPC machinery), on first
access, which keeps ``import shoal`` quick for a process that only runs a node.
"""

from typing import TYPE_CHECKING, Any

from ._near_cache import NearCache as NearCache
from ._version import __version__ as __version__
from .codec import Codec as Codec
from .config import DnsConfig as DnsConfig
from .config import EtcdConfig as EtcdConfig
from .config import GossipConfig as GossipConfig
from .config import GroupConfig as GroupConfig
from .config import NodeConfig as NodeConfig
from .errors import BadRequest as BadRequest
from .errors import Closed as Closed
from .errors import ConfigError as ConfigError
from .errors import Forbidden as Forbidden
from .errors import GroupFull as GroupFull
from .errors import GroupNotFound as GroupNotFound
from .errors import InvalidKey as InvalidKey
from .errors import InvalidTTL as InvalidTTL
from .errors import KeyTooLarge as KeyTooLarge
from .errors import LoadedValueTooLarge as LoadedValueTooLarge
from .errors import LoadError as LoadError
from .errors import LoadTimeout as LoadTimeout
from .errors import MembershipError as MembershipError
from .errors import MissingExtra as MissingExtra
from .errors import NotFound as NotFound
from .errors import PeerError as PeerError
from .errors import PeerTimeout as PeerTimeout
from .errors import PeerUnavailable as PeerUnavailable
from .errors import RemoteLoadError as RemoteLoadError
from .errors import ShoalError as ShoalError
from .errors import Unauthorized as Unauthorized
from .errors import ValueTooLarge as ValueTooLarge
from .group import Group as Group
from .group import Loader as Loader
from .node import Node as Node
from .ring import Ring as Ring
from .stats import GroupStats as GroupStats
from .stats import StoreStats as StoreStats
from .store import Store as Store
from .value import Value as Value

if TYPE_CHECKING:
    from .client import Client as Client
    from .sync_client import SyncClient as SyncClient

_LAZY = {"Client": "client", "SyncClient": "sync_client"}
"""Public names imported on first access: name -> submodule."""


def __getattr__(name: str) -> Any:
    """Import a lazily loaded public name (``shoal.Client``, ``shoal.SyncClient``)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "__version__",
    # core
    "Node",
    "Group",
    "Loader",
    "Value",
    "Store",
    "Codec",
    "Ring",
    "Client",
    "SyncClient",
    "NearCache",
    # configuration
    "NodeConfig",
    "GroupConfig",
    "EtcdConfig",
    "GossipConfig",
    "DnsConfig",
    # statistics
    "GroupStats",
    "StoreStats",
    # errors
    "ShoalError",
    "ConfigError",
    "MissingExtra",
    "NotFound",
    "BadRequest",
    "GroupNotFound",
    "InvalidKey",
    "InvalidTTL",
    "GroupFull",
    "KeyTooLarge",
    "ValueTooLarge",
    "LoadError",
    "LoadTimeout",
    "LoadedValueTooLarge",
    "PeerError",
    "PeerUnavailable",
    "PeerTimeout",
    "RemoteLoadError",
    "Closed",
    "MembershipError",
    "Unauthorized",
    "Forbidden",
]
