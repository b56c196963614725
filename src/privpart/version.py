"""privpart version, in a module of its own: everything imports it without importing privpart."""

__version__ = "0.1.0"
