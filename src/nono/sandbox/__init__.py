"""Turning a policy into kernel rules, and running programs under them."""
