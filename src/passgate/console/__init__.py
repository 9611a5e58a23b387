"""The web console: the pages where a business runs Passgate, on top of the management services."""
