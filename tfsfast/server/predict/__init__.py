"""Predict, in one place: the steps every Predict takes, each written once.

TF Serving's ``RunPredict`` (``predict_util.cc``) is one function; here REST and gRPC each have a
general path and a fast path in front of it, and all four compose the same steps:

1. **Route → ModelSpec.** REST: ``predict_route.parse_predict_route`` (the one parser of
   ``/v1/models/<name>[/versions/<n>|/labels/<l>]:<method>``), and ``predict_model_spec``, the
   subset a fast path takes. gRPC: the ModelSpec is a field of the request
   (``codecs.tensor_proto.decode_predict_request``; ``grpc.model_spec_util`` for its checks).
2. **Servable and signature.** The general paths hold a ``ServableHandle``
   (``ServerCore.get_servable_handle``), the fast paths read the handle table; both resolve the
   signature through ``predict_signatures.BundleSignatures`` (the REST codecs' ``input_dtypes``,
   ``get`` for the ``PredictSignature`` with TF Serving's checks, ``decode_inputs`` and
   ``output_aliases`` for gRPC's inputs and ``output_filter``). The fast paths keep them per
   servable in a ``SignatureCache``.
3. **Decode.** REST: the JSON or msgpack codec's ``parse_predict_request(body, input_dtypes)``;
   gRPC: ``PredictSignature.decode_inputs`` with the service's ``TensorProtoCodec``.
4. **Run or batch.** ``SavedModelBundle.run_inline`` (microsecond signatures, on the loop), else
   ``run_async`` (REST), or the signature's batcher (``PredictSignature.batcher``, the REST fast
   path); gRPC runs ``bundle.run`` measured by the signature's ``RunCost`` (``RunCosts``).
5. **Encode.** REST: the codec's ``format_predict_response(outputs, columnar,
   PredictSignature.output_dtypes)`` and ``format_error``; gRPC:
   ``tensor_proto.encode_predict_response``, the outputs in ``output_aliases`` order (else the
   signature's ``order``).

Who composes them: ``server.http.http_rest_api_handler`` (REST), ``server.http.rest_fast_path``
(REST's common case: plain JSON, a name and maybe a version, a run on the loop or batched),
``server.grpc.prediction_service_impl`` (``predict_answer``) and ``server.grpc.predict_fast_path``
(gRPC's common case). A fast path skips the steps it does not need and hands everything else to
its general path; it never has its own version of a step. ``predict_signatures`` is one source
compiled twice (``_predict_signatures_py.py`` + ``_predict_signatures.pxd``), so the compiled
fast paths call it in C.
"""
