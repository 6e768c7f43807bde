"""Generated kubelet gRPC code: hostdev_kubelet_pb.deviceplugin.v1beta1."""
