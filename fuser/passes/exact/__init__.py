"""The exact passes: one module per rewrite, each with its algebra in its docstring.

Importing ``fuser.passes`` imports them all, which registers them by name.
"""
