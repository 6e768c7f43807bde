"""Generated kubelet gRPC code: hostdev_kubelet_pb.podresources.v1."""
