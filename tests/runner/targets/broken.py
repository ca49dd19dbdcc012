"""A target module that fails while importing, as a typo in production code would."""

raise RuntimeError("this module fails to import on purpose")
