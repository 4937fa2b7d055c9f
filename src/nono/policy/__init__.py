"""Policy: what a sandbox may do, as plain data (no kernel calls here)."""

from .model import Grant, Policy

__all__ = ["Grant", "Policy"]
