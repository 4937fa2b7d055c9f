"""Kernel mechanisms (Landlock, seccomp, process controls) over raw syscalls.

Nothing in this package knows about policies, profiles or paths that matter to
users: it turns explicit rights into kernel objects and reports what the
running kernel could and could not enforce.
"""
