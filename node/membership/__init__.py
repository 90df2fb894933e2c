"""Gossip membership (SWIM + Lifeguard) as a pure core: who is in the cluster and whether it is alive.
Nothing in this package reads a clock, sleeps, touches a socket or uses unseeded randomness; the Trio shell
feeds `Membership` (swim.py) with packets and `now`, and sends what it returns.
"""
