"""What the tests and the benchmarks (``bench/``) share, in one place.

Nothing here imports CKAN at module level, so a benchmark script can import
it before it loads CKAN (``bench/common.py`` puts the checkout on
``sys.path``).
"""
