"""A stateful Kubernetes API server emulator (nodes, namespaces, resource.k8s.io/v1) over HTTP."""

from hostdev_testing.apiserver.errors import ApiError, FieldError
from hostdev_testing.apiserver.resources import RESOURCES, ResourceType
from hostdev_testing.apiserver.server import ApiServer

__all__ = ["RESOURCES", "ApiError", "ApiServer", "FieldError", "ResourceType"]
