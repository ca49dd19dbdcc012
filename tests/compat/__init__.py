"""Drop-in compatibility: what code written for ``socketserver`` does, done on sockserve."""
