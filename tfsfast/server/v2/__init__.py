"""The Open Inference Protocol (KServe V2) over the servables TF Serving's API serves.

What the protocol is, independently of its transport, and what REST adds:

- ``datatypes``: the protocol's datatype names and the TF DataTypes they carry.
- ``model_metadata``: server and model metadata, from a servable's signature.
- ``model_config``: Triton's model configuration of a servable (the model configuration
  extension), answered on both transports.
- ``infer``: an inference request bound to a signature (the checks, the input tensors), the
  outputs asked for, the response outputs.
- ``binary_tensor``: tensors as raw bytes, the layout of REST's binary extension and of gRPC's
  raw contents.
- ``rest_codec``: the REST inference body (JSON, with the binary tensor data extension).
- ``rest``: the REST routes (``/v2``, ``/v2/models/...``), served beside ``/v1`` by
  ``server.http.http_rest_api_handler``, which also answers the V2 health routes
  (``server.server_health``).

And what gRPC adds (reusing all but the two REST modules):

- ``grpc_protocol``: the gRPC service's messages (Triton's definition, in a private pool).
- ``grpc_codec``: ``ModelInferRequest`` (typed and raw contents) in, ``ModelInferResponse`` out.
- ``grpc_inference_service``: ``inference.GRPCInferenceService``, served on the gRPC port
  beside PredictionService by ``server.grpc.grpc_server``.
"""
