"""Shared test fixtures (closed-form Gaussian problems, dense operators, exact DAPS laws, the fake
science plugin, process helpers).

Test modules import from here, never from each other.
"""

#: the fake science plugin (``tests/support/fakes.py``) by module path, as specs and actors name it
FAKES = "tests.support.fakes"
