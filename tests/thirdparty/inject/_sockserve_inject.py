"""Put sockserve in ``sys.modules["socketserver"]`` in every interpreter of this venv, when told to.

Copied into the site-packages of each venv of the third-party suite and
imported at startup by ``_sockserve_inject.pth``, so it reaches every Python
process the project's tests start (dev servers, reloader children), whatever
environment they are given: werkzeug's test fixtures replace ``PYTHONPATH``,
which an environment variable approach would not survive.

The switch is the file ``<venv>/sockserve-inject``: present, it holds the
directory to import sockserve from, and sockserve stands in for
``socketserver``; absent, nothing happens (the stdlib baseline of the same
run). Each interpreter that switched appends one line to
``<venv>/sockserve-injected.log`` (``ok`` or ``failed``, its pid and command
line), so the runner can show that subprocesses were covered and that none
fell back to the stdlib silently (``site`` only prints errors from a ``.pth``).
"""

import os
import sys


def _inject() -> None:
    try:
        with open(os.path.join(sys.prefix, "sockserve-inject"), encoding="utf-8") as flag:
            source = flag.read().strip()
    except FileNotFoundError:
        return
    status = "ok"
    try:
        if "socketserver" in sys.modules:
            raise RuntimeError("socketserver was imported before the .pth ran")
        if source:
            sys.path.insert(0, source)
        import sockserve

        sys.modules["socketserver"] = sockserve
    except BaseException:
        status = "failed"
        raise
    finally:
        command = " ".join(getattr(sys, "orig_argv", [])).replace("\n", " ")[:300]
        line = f"{status} {os.getpid()} {command}\n"
        with open(os.path.join(sys.prefix, "sockserve-injected.log"), "a", encoding="utf-8") as log:
            log.write(line)


_inject()
