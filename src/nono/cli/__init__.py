"""Command-line interface: parse, call the layers below, render. Nothing else."""
