"""One user's turn: the manager and its factory and registry, the one call pipeline,
how a request is assembled and checked, and the resource supervisor that drives the
registry under pressure."""
