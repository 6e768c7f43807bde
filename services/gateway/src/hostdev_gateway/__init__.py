"""Kubelet gRPC sockets turned into NATS requests."""
