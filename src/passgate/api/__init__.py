"""HTTP layer: routers, dependencies and the one exception-to-problem table."""
