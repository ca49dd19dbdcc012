"""Which event loop the async strategy runs: uvloop when installed, else asyncio's.

uvloop is used when it is installed (``kind="auto"``), or demanded
(``kind="uvloop"``); the standard library's loop otherwise.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

__all__ = ["EVENT_LOOP_KINDS", "loop_factory"]

#: What ``event_loop`` may say: "auto" picks uvloop when it is installed.
EVENT_LOOP_KINDS = ("auto", "asyncio", "uvloop")


def loop_factory(kind: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """(the kind really used, a function making such a loop); ValueError if impossible."""
    if kind not in EVENT_LOOP_KINDS:
        raise ValueError(f"event_loop must be one of {EVENT_LOOP_KINDS}, got {kind!r}")
    if kind in ("auto", "uvloop"):
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if kind == "uvloop":
                raise ValueError(
                    "event_loop='uvloop' but uvloop is not installed "
                    "(pip install 'sockserve[uvloop]')"
                ) from None
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop
