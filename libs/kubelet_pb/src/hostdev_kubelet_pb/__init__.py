"""Generated Python code for the kubelet plugin gRPC APIs."""
