"""Server-rendered pages: the hosted confirm page and the dev inbox."""
