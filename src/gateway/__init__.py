"""EDI flow-processing gateway for French e-invoicing."""

__version__ = "0.1.0"
