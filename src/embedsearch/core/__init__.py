"""Use cases and the domain they speak: what the API, the CLI and library users call.

Each use-case module takes a `Deps` (deps.py: the store, the embedders, the limits) as its
first argument and reaches nothing else; none imports another's state. This package's
__init__ imports nothing, so the store can use the domain modules without a cycle.
"""
