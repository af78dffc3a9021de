"""The pipeline stages, in the order a request meets them: routing → budgets → execution →
verification → responding; reviewing and monitoring beside them. `compose` registers them all."""
