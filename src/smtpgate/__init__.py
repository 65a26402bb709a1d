"""smtpgate: SMTP and LMTP servers for asyncio, with a handler per phase of the session."""

from .errors import SMTPError
from .options import ServerSettings
from .protocol.core import ProtocolConfig, ServerProtocol
from .proxy import ProxyInfo
from .sasl import AuthRequest, AuthResult, XOAuth2Error
from .server import SMTPServer
from .session import Address, Envelope, Session, TLSDetails, TLSInfo
from .stream import DataStream, DataStreamError, MessageTooLarge
from .thread import ServerThread
from .tls import TLSSettings

__all__ = [
    "SMTPServer",
    "SMTPError",
    "ServerThread",
    "ServerSettings",
    "TLSSettings",
    "Session",
    "Envelope",
    "Address",
    "TLSInfo",
    "TLSDetails",
    "ProxyInfo",
    "AuthRequest",
    "AuthResult",
    "XOAuth2Error",
    "DataStream",
    "DataStreamError",
    "MessageTooLarge",
    "ServerProtocol",
    "ProtocolConfig",
]

__version__ = "0.1.0"
