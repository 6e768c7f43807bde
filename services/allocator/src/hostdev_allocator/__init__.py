"""The node's device ledger and reservations."""

from hostdev_runtime import deferred

# Before anything imports nats: this service never uses what nats-py would load with it.
deferred.defer(*deferred.NATS_WEBSOCKET)
