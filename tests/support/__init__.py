"""Shared test fixtures (closed-form Gaussian problems, dense operators, exact DAPS laws).

Test modules import from here, never from each other.
"""
