"""The sans-I/O protocol core: bytes in, replies and events out."""

from .config import ProtocolConfig
from .core import ServerProtocol
from .data import DataDecoder
from .events import CloseConnection, DataChunk, DataEnd, DataStart, Event, MailFrom, RcptTo, StartTLS
from .state import Phase

__all__ = [
    "ProtocolConfig",
    "ServerProtocol",
    "Phase",
    "DataDecoder",
    "Event",
    "MailFrom",
    "RcptTo",
    "DataStart",
    "DataChunk",
    "DataEnd",
    "StartTLS",
    "CloseConnection",
]
