"""Kubelet gRPC sockets turned into NATS requests."""

from hostdev_runtime import deferred

# Before anything imports nats: this service never uses what nats-py would load with it.
deferred.defer(*deferred.NATS_WEBSOCKET)
