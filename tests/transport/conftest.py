"""Fixtures of the transport tests: the Go node binary, built once per session."""

from helpers.go_node import go_node_binary

__all__ = ["go_node_binary"]
