"""Tornado handlers: the HTTP layer over the registry and the stores."""
