"""Secure aggregation on Flower's Message API: the server learns the sum of the clients' arrays only.

SecAgg+-style (pairwise masks from key agreement, Shamir shares of the mask secrets for dropout
recovery, fixed-point quantisation): `fixedpoint` maps floats to integers modulo 2^bits, `masks`
expands agreed keys into mask streams, `protocol` holds both halves' steps as plain functions, and
`server.secure_sum` drives them over a Flower Grid.
"""

from strategies.secagg.fixedpoint import FixedPoint
from strategies.secagg.server import SecureSumError, SecureSumResult, secure_sum

__all__ = ["FixedPoint", "SecureSumError", "SecureSumResult", "secure_sum"]
