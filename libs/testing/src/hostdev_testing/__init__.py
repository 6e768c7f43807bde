"""Test kit: nats-server fixture, fake host trees, kubelet simulator, Kubernetes API emulator."""
