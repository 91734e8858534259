"""Pairing strategies: how the two sides are paired (``base.PairingStrategy``)."""
