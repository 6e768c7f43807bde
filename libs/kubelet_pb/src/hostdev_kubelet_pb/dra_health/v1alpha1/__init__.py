"""Generated kubelet gRPC code: hostdev_kubelet_pb.dra_health.v1alpha1."""
