"""Passgate: login and account-opening risk decisions with email and SMS verification."""

__version__ = "0.1.0"
