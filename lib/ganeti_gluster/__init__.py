"""GlusterFS ExtStorage provider for Ganeti."""

__version__ = "0.2.0"
