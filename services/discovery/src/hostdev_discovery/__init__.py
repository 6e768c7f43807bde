"""Node inventory on NATS and the node's ResourceSlices."""
