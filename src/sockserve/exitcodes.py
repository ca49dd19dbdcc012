"""The exit statuses of the ``sockserve`` command, one per kind of failure.

Scripts and supervisors (systemd's ``RestartPreventExitStatus=``, say) can tell
a typo in the configuration from a port in use or a module that does not
import, and decide whether restarting could help.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode"]


class ExitCode(IntEnum):
    OK = 0
    #: Something unexpected; the log says what. Restarting may help.
    FAILURE = 1
    #: A bad command line, environment variable or configuration file.
    USAGE = 2
    #: A listener could not be opened: address in use, permission, unknown host.
    BIND = 3
    #: A worker process failed while starting, for a reason other than the two below.
    WORKER_BOOT = 4
    #: The target's module raised or was not found while importing.
    IMPORT = 5
    #: The module imported, but has no attribute of the target's name.
    NOT_FOUND = 6
    #: The target is not a request handler class, a server class or a factory.
    BAD_TARGET = 7
