"""Client-facing front-ends of a node: the HTTP API and its Prometheus metrics."""
