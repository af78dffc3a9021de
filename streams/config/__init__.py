"""Configuration: process settings from the environment, the versioned pipeline config file,
and the lazily built services (provider, tracer, tool ledger) that depend on them."""
