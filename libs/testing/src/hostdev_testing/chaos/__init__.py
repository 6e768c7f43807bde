"""The fault-injection campaign: SIGKILL any service, or nats-server, at every point where it
waits, restart it, let the kubelet retry, and check that nothing is lost or held twice."""
