"""Descriptor pools for the message types tfsfast declares at run time.

A few messages are read with types of tfsfast's own that share a wire format with TF Serving's
(a PredictRequest whose tensors stay unparsed, a ClassificationRequest whose input stays
serialized). They are declared in a fresh ``DescriptorPool`` that holds TF Serving's file they
refer to, with its dependencies, so the default pool is left as TensorFlow made it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["pool_with"]


def pool_with(module_descriptor: Any) -> tuple[Any, Any]:
    """A new ``DescriptorPool`` holding the file ``module_descriptor`` (a generated module's
    ``DESCRIPTOR``, such as ``model_pb2.DESCRIPTOR``) and the files it imports; and that file
    as a ``FileDescriptorProto``, whose ``name`` a new file lists as a dependency."""
    from google.protobuf import descriptor_pb2, descriptor_pool

    pool = descriptor_pool.DescriptorPool()
    for dependency in module_descriptor.dependencies:
        dependency_file = descriptor_pb2.FileDescriptorProto()
        dependency.CopyToProto(dependency_file)
        pool.Add(dependency_file)
    file = descriptor_pb2.FileDescriptorProto()
    module_descriptor.CopyToProto(file)
    pool.Add(file)
    return pool, file
