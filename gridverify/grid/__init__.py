"""Grids: case data in per unit (`GridData`) and the ACOPF constraint set written once in sympy."""
