"""The checker's one error: a network it cannot read (kept apart so its readers import it without cycles)."""


class UnsupportedNetwork(Exception):
    """The checker cannot read this network (an operator or graph shape it does not know)."""
