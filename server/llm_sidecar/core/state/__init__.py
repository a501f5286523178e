"""Where per-user data lives: response cache, conversations, usage ledger, quota
windows, and the turns that write them."""
