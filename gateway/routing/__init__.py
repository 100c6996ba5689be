"""Routing: parse the `model` field, keep the router's statistics, pick a compliant model and
endpoint (Thompson sampling, circuit breakers, load balancing) and fail over within the tier.

The public entry points are `Router` (router.py), `run_with_failover` (failover.py) and the
types in decision.py. Compliance is decided once, in selector.py, before any scoring: later
stages only ever reorder or drop candidates, so nothing downstream can leave the tier.
"""
