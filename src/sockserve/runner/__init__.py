"""``sockserve run``: load a handler, bind once, and supervise pre-forked worker processes."""
