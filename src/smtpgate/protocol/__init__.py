"""The sans-I/O protocol core: bytes in, replies and events out."""

from .core import ProtocolConfig, ServerProtocol
from .data import DataDecoder
from .events import CloseConnection, DataChunk, DataEnd, DataStart, Event, MailFrom, RcptTo, StartTLS

__all__ = [
    "ProtocolConfig",
    "ServerProtocol",
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
