"""Per-user state: response cache, conversations, usage ledger and the turns that write them."""
