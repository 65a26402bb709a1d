"""The read buffer that the connections of one event loop share.

asyncio hands a plain ``Protocol`` a fresh ``bytes`` per read, allocated at 256 KiB on its
default loop, which glibc may serve with mmap/mremap/munmap every time (twice the CPU per
small message: bench/profile.md, "Why small is bimodal"). A ``BufferedProtocol`` reads into
a buffer of its own instead. One buffer serves every connection of a loop: a transport
fills it and calls the protocol's ``buffer_updated`` at once, which copies the bytes out
before any other code of the loop runs. So the buffer costs no memory per connection, is
made once per thread, and is below glibc's mmap threshold.
"""

from __future__ import annotations

import threading

__all__ = ["READ_BUFFER_SIZE", "read_buffer"]

READ_BUFFER_SIZE = 64 * 1024  # the most one read takes from the socket (or the TLS layer)

_per_thread = threading.local()


def read_buffer() -> memoryview:
    """This thread's shared read buffer (an event loop runs in one thread)."""
    view: memoryview | None = getattr(_per_thread, "view", None)
    if view is None:
        view = _per_thread.view = memoryview(bytearray(READ_BUFFER_SIZE))
    return view
