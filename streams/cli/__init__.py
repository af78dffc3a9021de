"""`agentstream` commands, one module per command group; `main` is the console script."""
