"""Tool calls per user: who may call which tool, and the limits they run under."""
