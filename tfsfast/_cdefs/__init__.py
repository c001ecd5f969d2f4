"""C declarations shared by tfsfast's compiled modules (``.pxd`` files only; nothing to import).

Every declaration of what lies across the C boundary, other than a module's own C helpers in
``csrc/``, is here once, and the ``.pyx`` files cimport it from here:

- ``tf_c_api``: the TensorFlow C API symbols the runtime calls;
- ``numpy_array``: numpy's documented array C API (Cython's ``numpy`` declarations) and
  ``new_array``, the one way the compiled modules make an ndarray in C;
- ``clock``: ``monotonic()`` and ``wall_time()``, the clocks of ``time.monotonic()`` and
  ``time.time()`` read without a Python call.
"""
