"""Routing: provider chains, the attempt loop, circuit breakers, health probes and figures."""
